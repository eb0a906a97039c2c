//! The daemon's side of the control socket. Every connection is served by a task of its own:
//! it checks that the peer is root, reads one request line within [`DEADLINE`] and
//! [`MAX_REQUEST`] bytes, and hands the parsed command to the daemon's loop (the one writer of
//! the maps) with a channel for the answer. A client that is silent, slow, too long or gone
//! holds only its own task, and nothing it sent is applied unless its whole line arrived.

use std::{io, sync::Arc, time::Duration};

use tokio::{
    io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{UnixListener, UnixStream},
    sync::{Semaphore, mpsc, oneshot},
};

use crate::control::{self, Command, MAX_REQUEST, NOT_ROOT, PROTOCOL_VERSION, Response};

/// How long a client has to send its request, and again to take its answer.
pub const DEADLINE: Duration = Duration::from_secs(5);

/// Connections served at once; more are refused. With [`MAX_REQUEST`] this bounds what
/// clients can make the daemon buffer (512 MiB, and only root can connect).
pub const MAX_CLIENTS: usize = 16;

/// A command waiting for the daemon's loop, and where its answer goes.
#[derive(Debug)]
pub struct Pending {
    command: Command,
    reply: oneshot::Sender<Response>,
}

impl Pending {
    /// Answers the command with `handle`'s response (dropped if the client is gone).
    pub fn answer_with(self, handle: impl FnOnce(Command) -> Response) {
        let _ = self.reply.send(handle(self.command));
    }
}

/// The way to the daemon's loop, for tasks that need it to answer.
#[derive(Clone, Debug)]
pub struct Requests(mpsc::Sender<Pending>);

impl Requests {
    /// Has the daemon's loop carry out `command`; `None` once it stopped.
    pub async fn ask(&self, command: Command) -> Option<Response> {
        let (reply, answer) = oneshot::channel();
        self.0.send(Pending { command, reply }).await.ok()?;
        answer.await.ok()
    }
}

/// Serves `listener` from tasks of its own; the commands of complete requests, and of
/// [`Requests::ask`], come out of the receiver in the order they were made.
pub fn spawn(listener: UnixListener) -> (Requests, mpsc::Receiver<Pending>) {
    let (requests, commands) = mpsc::channel(MAX_CLIENTS);
    let requests = Requests(requests);
    tokio::spawn(accept(listener, requests.clone()));
    (requests, commands)
}

async fn accept(listener: UnixListener, requests: Requests) {
    let slots = Arc::new(Semaphore::new(MAX_CLIENTS));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors, say: give the connections in hand time to finish.
                log::warn!("accepting a control connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            refuse(&stream, "too many control connections at once; try again");
            continue;
        };
        let requests = requests.clone();
        tokio::spawn(async move {
            if let Err(e) = serve(stream, &requests).await {
                log::warn!("control connection: {e}");
            }
            drop(slot);
        });
    }
}

/// Serves one connection: at most one request, at most one answer.
async fn serve(stream: UnixStream, requests: &Requests) -> io::Result<()> {
    if stream.peer_cred()?.uid() != 0 {
        refuse(&stream, NOT_ROOT);
        return Ok(());
    }
    let (read, mut write) = stream.into_split();
    let line = match tokio::time::timeout(DEADLINE, read_request(read, MAX_REQUEST)).await {
        Err(_) => return Err(timed_out("no complete request")),
        Ok(Err(ReadError::Io(e))) => return Err(e),
        // Nothing was asked.
        Ok(Err(ReadError::Truncated)) => return Ok(()),
        Ok(Err(ReadError::TooLong)) => {
            refuse(
                write.as_ref(),
                &format!("request refused: longer than {MAX_REQUEST} bytes"),
            );
            return Ok(());
        }
        Ok(Ok(line)) => line,
    };
    let result = match control::parse_request(&line) {
        Err(e) => Err(e),
        Ok(command) => {
            // The request's buffer is not held while the daemon works.
            drop(line);
            match requests.ask(command).await {
                Some(response) => response.result,
                // The daemon is stopping.
                None => return Ok(()),
            }
        }
    };
    let mut text = serde_json::to_string(&Response {
        version: PROTOCOL_VERSION,
        result,
    })?;
    text.push('\n');
    tokio::time::timeout(DEADLINE, write.write_all(text.as_bytes()))
        .await
        .map_err(|_| timed_out("the answer was not taken"))?
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("{what} within {DEADLINE:?}"),
    )
}

/// Answers `message` as a refusal without waiting: nothing was written to the connection yet,
/// so the short line fits its send buffer.
fn refuse(stream: &UnixStream, message: &str) {
    let response = Response {
        version: PROTOCOL_VERSION,
        result: Err(message.to_owned()),
    };
    let Ok(mut text) = serde_json::to_string(&response) else {
        return;
    };
    text.push('\n');
    let _ = stream.try_write(text.as_bytes());
}

/// Why no request line was read.
#[derive(Debug)]
enum ReadError {
    /// The line, newline included, is longer than the limit.
    TooLong,
    /// The peer closed the connection before the newline.
    Truncated,
    /// Reading failed.
    Io(io::Error),
}

/// Reads one line of at most `limit` bytes (its newline included) and returns it without the
/// newline, buffering no more than `limit` bytes.
async fn read_request(read: impl AsyncRead + Unpin, limit: usize) -> Result<Vec<u8>, ReadError> {
    // Reserved whole, the buffer is never moved as it grows: the allocator maps a large one
    // apart and unmaps it when dropped, and only the bytes received make it resident. Grown
    // step by step it would come from the heap, which keeps what a refused request filled.
    let mut line = Vec::with_capacity(limit);
    BufReader::new(read.take(limit as u64))
        .read_until(b'\n', &mut line)
        .await
        .map_err(ReadError::Io)?;
    if line.pop_if(|b| *b == b'\n').is_some() {
        Ok(line)
    } else if line.len() == limit {
        Err(ReadError::TooLong)
    } else {
        Err(ReadError::Truncated)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn read(input: &[u8], limit: usize) -> Result<Vec<u8>, ReadError> {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(read_request(input, limit))
    }

    #[test]
    fn a_line_is_read_without_its_newline_and_nothing_after_it() {
        assert_eq!(read(b"{}\n{\"more\"", 16).unwrap(), b"{}");
        assert_eq!(read(b"0123456\n", 8).unwrap(), b"0123456");
    }

    #[test]
    fn a_line_past_the_limit_is_too_long_and_one_cut_short_is_truncated() {
        assert!(matches!(read(b"01234567\n", 8), Err(ReadError::TooLong)));
        assert!(matches!(read(b"01234567", 8), Err(ReadError::TooLong)));
        assert!(matches!(read(b"0123456", 8), Err(ReadError::Truncated)));
        assert!(matches!(read(b"", 8), Err(ReadError::Truncated)));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        /// Whatever arrives, the request is exactly the bytes before the first newline when that
        /// newline lies within the limit, and nothing otherwise.
        #[test]
        fn a_request_is_the_first_line_within_the_limit(
            input in proptest::collection::vec(
                prop_oneof![Just(b'\n'), any::<u8>()], 0..96),
            limit in 1usize..64,
        ) {
            let newline = input.iter().position(|b| *b == b'\n');
            match (read(&input, limit), newline) {
                (Ok(line), Some(n)) => {
                    prop_assert!(n < limit);
                    prop_assert_eq!(line, &input[..n]);
                }
                (Err(ReadError::TooLong), n) => {
                    prop_assert!(n.is_none_or(|n| n >= limit) && input.len() >= limit);
                }
                (Err(ReadError::Truncated), None) => prop_assert!(input.len() < limit),
                (other, n) => prop_assert!(false, "{other:?} for a newline at {n:?}"),
            }
        }
    }
}
