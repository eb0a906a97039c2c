//! Changes to the service table as ipvsadm makes them (`-A -E -D -a -e -d -C`), with IPVS's
//! refusals. Pure: a batch is applied to a copy of the daemon's services and kept only if every
//! edit and the resulting table are valid.

use std::{fmt, net::IpAddr};

use serde::{Deserialize, Serialize};

use crate::model::{self, DestSpec, ServiceAddr, ServiceSpec, SpecError};

/// One change of the service table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Edit {
    /// `-A`: a new service without real servers (the spec's `dests` are not used).
    AddService(ServiceSpec),
    /// `-E`: new scheduler, flags and persistence for a service; its real servers stay.
    EditService(ServiceSpec),
    /// `-D`.
    DeleteService(ServiceAddr),
    /// `-a`: the new real server goes to the head of the list, as IPVS links it.
    AddDest(ServiceAddr, DestSpec),
    /// `-e`: new weight and thresholds; the real server keeps its place.
    EditDest(ServiceAddr, DestSpec),
    /// `-d`.
    DeleteDest(ServiceAddr, IpAddr),
    /// `-C`: no services at all.
    Clear,
}

/// Why an edit is refused; the text is ipvsadm's.
#[derive(Debug, PartialEq, Eq)]
pub enum EditError {
    /// `-A` of an existing service.
    ServiceExists,
    /// `-E`/`-D`/`-Z` of a missing service.
    NoSuchService,
    /// `-a`/`-e`/`-d` in a missing service.
    ServiceNotDefined,
    /// `-a` of a real server the service has.
    DestExists,
    /// `-e`/`-d` of a real server the service lacks.
    NoSuchDest,
    /// `-a`/`-e` with a lower threshold above the upper one (the kernel's `-ERANGE`).
    ThresholdRange,
    /// The resulting table breaks a limit of xdpvs.
    Invalid(SpecError),
}

impl fmt::Display for EditError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ServiceExists => "Service already exists",
            Self::NoSuchService => "No such service",
            Self::ServiceNotDefined => "Service not defined",
            Self::DestExists => "Destination already exists",
            Self::NoSuchDest => "No such destination",
            Self::ThresholdRange => "Numerical result out of range",
            Self::Invalid(e) => return write!(f, "{e}"),
        })
    }
}

impl std::error::Error for EditError {}

/// Applies `edits` in order to a copy of `services` and returns it, validated whole; on any
/// error `services` is untouched.
pub fn apply(services: &[ServiceSpec], edits: &[Edit]) -> Result<Vec<ServiceSpec>, EditError> {
    let mut table = services.to_vec();
    for edit in edits {
        apply_one(&mut table, edit)?;
    }
    model::validate(&table).map_err(EditError::Invalid)?;
    Ok(table)
}

fn apply_one(table: &mut Vec<ServiceSpec>, edit: &Edit) -> Result<(), EditError> {
    let find =
        |table: &[ServiceSpec], addr: &ServiceAddr| table.iter().position(|s| s.addr == *addr);
    match edit {
        Edit::AddService(spec) => {
            if find(table, &spec.addr).is_some() {
                return Err(EditError::ServiceExists);
            }
            table.push(ServiceSpec {
                dests: Vec::new(),
                ..spec.clone()
            });
        }
        Edit::EditService(spec) => {
            let i = find(table, &spec.addr).ok_or(EditError::NoSuchService)?;
            let dests = std::mem::take(&mut table[i].dests);
            table[i] = ServiceSpec {
                dests,
                ..spec.clone()
            };
        }
        Edit::DeleteService(addr) => {
            table.remove(find(table, addr).ok_or(EditError::NoSuchService)?);
        }
        Edit::AddDest(addr, dest) | Edit::EditDest(addr, dest) => {
            let i = find(table, addr).ok_or(EditError::ServiceNotDefined)?;
            // The kernel checks the values before it looks for the real server.
            if !dest.thresholds_ordered() {
                return Err(EditError::ThresholdRange);
            }
            let dests = &mut table[i].dests;
            match (dests.iter().position(|d| d.addr == dest.addr), edit) {
                (Some(_), Edit::AddDest(..)) => return Err(EditError::DestExists),
                (None, Edit::AddDest(..)) => dests.insert(0, *dest),
                (Some(j), _) => dests[j] = *dest,
                (None, _) => return Err(EditError::NoSuchDest),
            }
        }
        Edit::DeleteDest(addr, dest) => {
            let i = find(table, addr).ok_or(EditError::ServiceNotDefined)?;
            let dests = &mut table[i].dests;
            let j = dests
                .iter()
                .position(|d| d.addr == *dest)
                .ok_or(EditError::NoSuchDest)?;
            dests.remove(j);
        }
        Edit::Clear => table.clear(),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use lb_common::sched::Scheduler;

    use crate::model::{Persistence, Protocol};

    fn addr(port: u16) -> ServiceAddr {
        ServiceAddr {
            protocol: Protocol::Tcp,
            addr: std::net::IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            port,
        }
    }

    fn svc(port: u16, scheduler: Scheduler) -> ServiceSpec {
        ServiceSpec {
            addr: addr(port),
            scheduler,
            flags: 0,
            persistence: None,
            dests: vec![],
        }
    }

    fn dest(last: u8, weight: u32) -> DestSpec {
        DestSpec {
            addr: std::net::IpAddr::V4(Ipv4Addr::new(10, 0, 0, last)),
            weight,
            u_threshold: 0,
            l_threshold: 0,
        }
    }

    #[test]
    fn builds_a_table_as_an_ipvsadm_script_does() {
        let t = apply(
            &[],
            &[
                Edit::AddService(svc(80, Scheduler::Rr)),
                Edit::AddDest(addr(80), dest(2, 1)),
                Edit::AddDest(addr(80), dest(3, 1)),
                Edit::EditDest(addr(80), dest(3, 5)),
                Edit::EditService(ServiceSpec {
                    persistence: Some(Persistence {
                        timeout: 60,
                        netmask: model::ClientMask::Netmask(Ipv4Addr::BROADCAST),
                    }),
                    ..svc(80, Scheduler::Wrr)
                }),
                Edit::AddService(svc(443, Scheduler::Wlc)),
                Edit::DeleteDest(addr(80), std::net::IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2))),
                Edit::DeleteService(addr(443)),
            ],
        )
        .unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].scheduler, Scheduler::Wrr);
        assert_eq!(t[0].persistence.unwrap().timeout, 60);
        assert_eq!(t[0].dests, vec![dest(3, 5)], "-E keeps the real servers");
        assert_eq!(apply(&t, &[Edit::Clear]).unwrap(), vec![]);
    }

    #[test]
    fn refusals_carry_ipvsadm_messages_and_change_nothing() {
        let t = apply(&[], &[Edit::AddService(svc(80, Scheduler::Rr))]).unwrap();
        let refused = |edit: Edit| apply(&t, &[Edit::Clear, edit]).map(|_| ()).unwrap_err();
        let cases = [
            (Edit::EditService(svc(90, Scheduler::Rr)), "No such service"),
            (Edit::DeleteService(addr(90)), "No such service"),
            (Edit::AddDest(addr(90), dest(2, 1)), "Service not defined"),
            (
                Edit::DeleteDest(addr(90), dest(2, 1).addr),
                "Service not defined",
            ),
        ];
        for (edit, message) in cases {
            assert_eq!(refused(edit).to_string(), message);
        }
        let with_dest = apply(&t, &[Edit::AddDest(addr(80), dest(2, 1))]).unwrap();
        let err = |edit: Edit| apply(&with_dest, &[edit]).unwrap_err().to_string();
        assert_eq!(
            err(Edit::AddService(svc(80, Scheduler::Wlc))),
            "Service already exists"
        );
        assert_eq!(
            err(Edit::AddDest(addr(80), dest(2, 3))),
            "Destination already exists"
        );
        assert_eq!(
            err(Edit::EditDest(addr(80), dest(9, 3))),
            "No such destination"
        );
        assert_eq!(
            err(Edit::DeleteDest(addr(80), dest(9, 1).addr)),
            "No such destination"
        );
        let inverted = DestSpec {
            u_threshold: 10,
            l_threshold: 20,
            ..dest(2, 1)
        };
        for edit in [
            Edit::AddDest(addr(80), inverted),
            Edit::EditDest(addr(80), inverted),
            Edit::AddDest(
                addr(80),
                DestSpec {
                    addr: dest(9, 1).addr,
                    ..inverted
                },
            ),
        ] {
            assert_eq!(err(edit), "Numerical result out of range");
        }
        assert!(
            err(Edit::EditDest(addr(80), dest(2, u32::MAX))).contains("illegal weight"),
            "the whole table is validated"
        );
        assert_eq!(with_dest[0].dests, vec![dest(2, 1)]);
    }

    #[test]
    fn real_servers_are_listed_newest_first_as_ipvs_links_them() {
        let add = |last| Edit::AddDest(addr(80), dest(last, 1));
        let t = apply(
            &[],
            &[
                Edit::AddService(svc(80, Scheduler::Rr)),
                add(2),
                add(3),
                add(4),
            ],
        )
        .unwrap();
        let order = |t: &[ServiceSpec]| {
            t[0].dests
                .iter()
                .map(|d| match d.addr {
                    IpAddr::V4(a) => a.octets()[3],
                    IpAddr::V6(a) => a.octets()[15],
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(order(&t), [4, 3, 2]);
        let t = apply(&t, &[Edit::EditDest(addr(80), dest(3, 7))]).unwrap();
        assert_eq!(order(&t), [4, 3, 2], "-e keeps the place");
        assert_eq!(t[0].dests[1].weight, 7);
        let t = apply(&t, &[Edit::DeleteDest(addr(80), dest(2, 1).addr), add(2)]).unwrap();
        assert_eq!(order(&t), [2, 4, 3], "a re-added server goes to the head");
    }
}
