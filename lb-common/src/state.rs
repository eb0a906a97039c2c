//! Connection states as IPVS keeps them for a director that sees only the client's packets
//! (the kernel's INPUT-ONLY table, used for direct routing).

/// IPVS connection state. The numbering is the kernel's `IP_VS_TCP_S_*`; UDP flows use
/// [`ConnState::Udp`].
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ConnState {
    /// No packet that sets a state seen yet.
    None = 0,
    /// ESTABLISHED: the only state counted as active.
    Established = 1,
    /// SYN_SENT.
    SynSent = 2,
    /// SYN_RECV.
    SynRecv = 3,
    /// FIN_WAIT.
    FinWait = 4,
    /// TIME_WAIT.
    TimeWait = 5,
    /// CLOSE.
    Close = 6,
    /// CLOSE_WAIT.
    CloseWait = 7,
    /// LAST_ACK.
    LastAck = 8,
    /// LISTEN.
    Listen = 9,
    /// SYNACK.
    SynAck = 10,
    /// A UDP flow (IPVS's single UDP state).
    Udp = 11,
}

/// Number of states, for tables indexed by state.
pub const STATE_COUNT: usize = 12;

use ConnState::{
    Close as CL, CloseWait as CW, Established as ES, FinWait as FW, LastAck as LA, Listen as LI,
    None as NO, SynAck as SA, SynRecv as SR, SynSent as SS, TimeWait as TW,
};

/// Rows: syn, fin, ack, rst; columns: the current TCP state (`None`..`SynAck`).
const INPUT_ONLY: [[ConnState; 11]; 4] = [
    [SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SR],
    [CL, FW, SS, TW, FW, TW, CL, CW, LA, LI, TW],
    [ES, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES],
    [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, CL],
];

/// [`INPUT_ONLY`] with each row packed 4 bits a state, so that a transition is a shift and a
/// mask: no table in memory for the verifier to bound.
const PACKED: [u64; 4] = {
    let mut packed = [0u64; 4];
    let mut row = 0;
    while row < 4 {
        let mut col = 0;
        while col < 11 {
            packed[row] |= (INPUT_ONLY[row][col] as u64) << (4 * col);
            col += 1;
        }
        row += 1;
    }
    packed
};

/// TCP header flag bits.
pub mod tcp_flags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// ACK.
    pub const ACK: u8 = 0x10;
}

impl ConnState {
    /// Decodes a stored state byte.
    pub const fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => NO,
            1 => ES,
            2 => SS,
            3 => SR,
            4 => FW,
            5 => TW,
            6 => CL,
            7 => CW,
            8 => LA,
            9 => LI,
            10 => SA,
            11 => Self::Udp,
            _ => return None,
        })
    }

    /// The state after a client packet with TCP `flags`, as IPVS's INPUT-ONLY table gives it:
    /// RST takes precedence, then SYN, FIN, ACK; a segment with none of them keeps the state.
    pub fn after_tcp(self, flags: u8) -> Self {
        let row = if flags & tcp_flags::RST != 0 {
            PACKED[3]
        } else if flags & tcp_flags::SYN != 0 {
            PACKED[0]
        } else if flags & tcp_flags::FIN != 0 {
            PACKED[1]
        } else if flags & tcp_flags::ACK != 0 {
            PACKED[2]
        } else {
            return self;
        };
        if self as u8 > Self::SynAck as u8 {
            return self;
        }
        match Self::from_u8(((row >> (4 * self as u32)) & 0xf) as u8) {
            Some(next) => next,
            None => self,
        }
    }

    /// Whether IPVS counts a connection in this state in ActiveConn (else InActConn).
    pub const fn is_active(self) -> bool {
        matches!(self, ES)
    }

    /// The name ipvsadm prints.
    pub const fn name(self) -> &'static str {
        match self {
            NO => "NONE",
            ES => "ESTABLISHED",
            SS => "SYN_SENT",
            SR => "SYN_RECV",
            FW => "FIN_WAIT",
            TW => "TIME_WAIT",
            CL => "CLOSE",
            CW => "CLOSE_WAIT",
            LA => "LAST_ACK",
            LI => "LISTEN",
            SA => "SYNACK",
            Self::Udp => "UDP",
        }
    }
}

/// Idle timeouts per state in seconds, indexed by `ConnState as usize`; the daemon writes them
/// to the sweeper's TIMEOUTS map.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts(pub [u32; STATE_COUNT]);

impl Default for Timeouts {
    /// IPVS's defaults.
    fn default() -> Self {
        Self([2, 900, 120, 60, 120, 120, 10, 60, 30, 120, 120, 300])
    }
}

impl Timeouts {
    /// Idle timeout of a flow in `state`, in seconds.
    pub fn of(&self, state: ConnState) -> u32 {
        self.0.get(state as usize).copied().unwrap_or(0)
    }

    /// Applies `--set tcp tcpfin udp`; a 0 keeps the current value.
    pub fn set(&mut self, tcp: u32, tcpfin: u32, udp: u32) {
        for (state, v) in [(ES, tcp), (FW, tcpfin), (ConnState::Udp, udp)] {
            if v != 0 {
                self.0[state as usize] = v;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{tcp_flags::*, *};

    fn run(flags: &[u8]) -> ConnState {
        flags.iter().fold(NO, |s, f| s.after_tcp(*f))
    }

    #[test]
    fn handshake_reaches_established() {
        assert_eq!(run(&[SYN]), SR);
        assert_eq!(run(&[SYN, ACK]), ES);
        assert_eq!(run(&[SYN, ACK, ACK | 0x08]), ES);
    }

    #[test]
    fn mid_stream_ack_is_established() {
        assert_eq!(run(&[ACK]), ES);
    }

    #[test]
    fn close_sequences() {
        assert_eq!(run(&[SYN, ACK, FIN | ACK]), FW);
        assert_eq!(run(&[SYN, ACK, FIN | ACK, ACK]), FW);
        assert_eq!(run(&[SYN, ACK, RST]), CL);
        // RST wins over every other flag.
        assert_eq!(run(&[SYN, ACK, RST | SYN]), CL);
        // A RST during the handshake keeps SYN_RECV, as the kernel's table says.
        assert_eq!(run(&[SYN, RST]), SR);
    }

    #[test]
    fn packed_rows_match_the_table() {
        for (r, flag) in [SYN, FIN, ACK, RST].into_iter().enumerate() {
            for col in 0..11u8 {
                let s = ConnState::from_u8(col).unwrap();
                assert_eq!(
                    s.after_tcp(flag),
                    INPUT_ONLY[r][col as usize],
                    "{s:?} {flag:#x}"
                );
            }
        }
        assert_eq!(ConnState::Udp.after_tcp(SYN), ConnState::Udp);
    }

    #[test]
    fn flagless_segment_keeps_state() {
        assert_eq!(run(&[SYN, 0]), SR);
    }

    #[test]
    fn only_established_is_active() {
        for v in 0..STATE_COUNT as u8 {
            let s = ConnState::from_u8(v).unwrap();
            assert_eq!(s.is_active(), s == ES, "{s:?}");
            assert_eq!(s as u8, v);
        }
        assert_eq!(ConnState::from_u8(STATE_COUNT as u8), None);
    }

    #[test]
    fn timeouts_default_and_set() {
        let mut t = Timeouts::default();
        assert_eq!(t.of(ES), 900);
        assert_eq!(t.of(NO), 2);
        assert_eq!(t.of(ConnState::Udp), 300);
        t.set(100, 0, 30);
        assert_eq!((t.of(ES), t.of(FW), t.of(ConnState::Udp)), (100, 120, 30));
    }
}
