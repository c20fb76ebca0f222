//! The cabinet client's side of Modbus RTU framing (a serial line, or RTU
//! framing over TCP), matching answers to requests.
//!
//! An RTU frame carries no transaction id: all that ties an answer to its
//! request is that it comes next. tokio-modbus's RTU client takes the next
//! frame on the line for the answer and fails the request when its function
//! code differs. After a request timed out its late answer is that next
//! frame: taken for the answer of a request that looks alike (stale
//! inputs), failing one that does not, whose own answer then lands on the
//! request after it, and so on. Reopening the port does not help: the late
//! bytes come through the reopened port. So [`RtuLine`]
//! - discards whatever is on the line before it sends a request: a byte
//!   that came before the request cannot be its answer;
//! - takes for the answer only a frame with a valid CRC from the cabinet's
//!   unit id, with the request's function code (or its exception) and the
//!   register count of a read or the start and count a write echoes; any
//!   other frame is discarded and counted while it waits on;
//! - after a request timed out, [`RtuLine::drain`] reads and discards until
//!   the late answer has come and the line has been silent for the
//!   inter-frame gap, or for one more request timeout.
//!
//! What RTU itself cannot tell apart: an answer to a read of the same
//! registers that comes after the drain, while that read is outstanding
//! again (a cabinet later than twice the request timeout, or one that
//! queued the requests it could not answer and answers them all at once).
//! docs/modbus.md tells such a cabinet's engineer to raise the timeout.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio_modbus::ExceptionCode;
use tracing::debug;

use super::cabinet::CabinetStats;
use crate::config::{Parity, serial_char_bits};

/// The byte stream under an RTU line: a serial port or a TCP socket.
pub trait Wire: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Wire for T {}

const READ_HOLDINGS: u8 = 0x03;
const READ_INPUTS: u8 = 0x04;
const WRITE_HOLDINGS: u8 = 0x10;
/// Set in the function code of an exception answer.
const EXCEPTION: u8 = 0x80;
/// The longest RTU frame (Modbus over serial line: 256 bytes).
const MAX_FRAME: usize = 256;
/// The shortest silence taken for the end of a frame: below it, the
/// scheduler's and the serial driver's own delays are larger than the gap.
pub const MIN_GAP: Duration = Duration::from_millis(2);

/// The RTU inter-frame gap, 3.5 character times, on a line at `baud` with
/// this framing (at least [`MIN_GAP`]).
pub fn inter_frame_gap(baud: u32, parity: Parity, data_bits: u8, stop_bits: u8) -> Duration {
    let bits = serial_char_bits(parity, data_bits, stop_bits);
    Duration::from_nanos(3_500_000_000 * u64::from(bits) / u64::from(baud.max(1))).max(MIN_GAP)
}

/// What the answer to a request must be.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// FC04 or FC03 (`function`): `count` registers.
    Registers { function: u8, count: u16 },
    /// FC16: the start address and count written, echoed.
    Written { start: u16, count: u16 },
}

impl Expect {
    fn function(self) -> u8 {
        match self {
            Expect::Registers { function, .. } => function,
            Expect::Written { .. } => WRITE_HOLDINGS,
        }
    }

    /// The whole answer frame, unit id to CRC.
    fn len(self) -> usize {
        match self {
            Expect::Registers { count, .. } => 5 + 2 * count as usize,
            Expect::Written { .. } => 8,
        }
    }

    /// `frame` (of [`Expect::len`], function code checked) answers it.
    fn fits(self, frame: &[u8]) -> bool {
        match self {
            Expect::Registers { count, .. } => usize::from(frame[2]) == 2 * count as usize,
            Expect::Written { start, count } => {
                frame[2..4] == start.to_be_bytes() && frame[4..6] == count.to_be_bytes()
            }
        }
    }
}

/// CRC-16/MODBUS (reflected polynomial 0xA001 from 0xFFFF); sent low byte
/// first.
fn crc16(bytes: &[u8]) -> u16 {
    let mut crc = 0xFFFF_u16;
    for &b in bytes {
        crc ^= u16::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xA001 } else { crc >> 1 };
        }
    }
    crc
}

fn crc_ok(frame: &[u8]) -> bool {
    let (body, crc) = frame.split_at(frame.len() - 2);
    crc16(body).to_le_bytes() == crc
}

/// The length of a complete frame with a valid CRC at the start of
/// `bytes`, for the function codes this client asks for (their answers and
/// exceptions).
fn frame_at(bytes: &[u8]) -> Option<usize> {
    let len = match *bytes.get(1)? {
        READ_INPUTS | READ_HOLDINGS => 5 + usize::from(*bytes.get(2)?),
        WRITE_HOLDINGS => 8,
        f if f & EXCEPTION != 0 => 5,
        _ => return None,
    };
    (bytes.len() >= len && crc_ok(&bytes[..len])).then_some(len)
}

/// The complete frames in `bytes` (skipping bytes that start none).
fn count_frames(bytes: &[u8]) -> u64 {
    let (mut at, mut frames) = (0, 0);
    while at < bytes.len() {
        match frame_at(&bytes[at..]) {
            Some(len) => {
                frames += 1;
                at += len;
            }
            None => at += 1,
        }
    }
    frames
}

/// A cabinet's RTU line: one request at a time, answers matched to it.
pub struct RtuLine {
    wire: Box<dyn Wire>,
    unit: u8,
    /// Silence that ends a frame on this line.
    gap: Duration,
    /// Bytes received and not yet taken for an answer or discarded.
    rx: Vec<u8>,
    stats: Arc<CabinetStats>,
}

impl std::fmt::Debug for RtuLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RtuLine")
            .field("unit", &self.unit)
            .field("gap", &self.gap)
            .field("received", &self.rx.len())
            .finish_non_exhaustive()
    }
}

impl RtuLine {
    /// Discarded frames are counted in `stats.discarded_answers`.
    pub fn new(wire: Box<dyn Wire>, unit: u8, gap: Duration, stats: Arc<CabinetStats>) -> Self {
        RtuLine { wire, unit, gap, rx: Vec::with_capacity(2 * MAX_FRAME), stats }
    }

    /// FC04 over `count` input registers from `start`.
    pub async fn read_input_registers(&mut self, start: u16, count: u16) -> tokio_modbus::Result<Vec<u16>> {
        self.read_registers(READ_INPUTS, start, count).await
    }

    /// FC03 over `count` holding registers from `start` (the heartbeat read
    /// back, `super::one_master`).
    pub async fn read_holding_registers(&mut self, start: u16, count: u16) -> tokio_modbus::Result<Vec<u16>> {
        self.read_registers(READ_HOLDINGS, start, count).await
    }

    async fn read_registers(&mut self, function: u8, start: u16, count: u16) -> tokio_modbus::Result<Vec<u16>> {
        let [s0, s1] = start.to_be_bytes();
        let [c0, c1] = count.to_be_bytes();
        let answer = self.exchange(&[function, s0, s1, c0, c1], Expect::Registers { function, count }).await?;
        Ok(answer
            .map(|frame| frame[3..frame.len() - 2].chunks_exact(2).map(|w| u16::from_be_bytes([w[0], w[1]])).collect()))
    }

    /// FC16 of `words` from `start` (at most 123, as
    /// [`super::registers::MAX_WRITE`] plans them: the byte count fits).
    pub async fn write_multiple_registers(&mut self, start: u16, words: &[u16]) -> tokio_modbus::Result<()> {
        let count = words.len() as u16;
        let mut pdu = Vec::with_capacity(6 + 2 * words.len());
        pdu.push(WRITE_HOLDINGS);
        pdu.extend_from_slice(&start.to_be_bytes());
        pdu.extend_from_slice(&count.to_be_bytes());
        pdu.push((2 * words.len()) as u8);
        for w in words {
            pdu.extend_from_slice(&w.to_be_bytes());
        }
        Ok(self.exchange(&pdu, Expect::Written { start, count }).await?.map(drop))
    }

    /// After a request timed out: read and discard until its late answer
    /// has come and the line has been silent for the inter-frame gap, or
    /// until `patience` has passed. Returns the frames discarded.
    pub async fn drain(&mut self, patience: Duration) -> io::Result<u64> {
        let give_up = tokio::time::Instant::now() + patience;
        loop {
            // Once a whole frame is in, the late answer has come: only the
            // gap is left to wait (nothing else was asked for).
            let until = if count_frames(&self.rx) > 0 {
                (tokio::time::Instant::now() + self.gap).min(give_up)
            } else {
                give_up
            };
            match tokio::time::timeout_at(until, self.fill()).await {
                Ok(filled) => filled?,
                Err(_) => break,
            }
        }
        Ok(self.discard(self.rx.len()))
    }

    pub async fn shutdown(&mut self) -> io::Result<()> {
        self.wire.shutdown().await
    }

    async fn exchange(&mut self, pdu: &[u8], expect: Expect) -> io::Result<Result<Vec<u8>, ExceptionCode>> {
        // Nothing that came before the request can be its answer.
        self.take_pending()?;
        self.discard(self.rx.len());
        let mut adu = Vec::with_capacity(pdu.len() + 3);
        adu.push(self.unit);
        adu.extend_from_slice(pdu);
        adu.extend_from_slice(&crc16(&adu).to_le_bytes());
        self.wire.write_all(&adu).await?;
        self.wire.flush().await?;
        loop {
            if let Some((at, len)) = self.find_answer(expect) {
                self.discard(at);
                let frame: Vec<u8> = self.rx.drain(..len).collect();
                return Ok(if frame[1] & EXCEPTION != 0 { Err(ExceptionCode::new(frame[2])) } else { Ok(frame) });
            }
            self.fill().await?;
        }
    }

    /// Where in `rx` the answer to the request is, and its length.
    fn find_answer(&self, expect: Expect) -> Option<(usize, usize)> {
        let function = expect.function();
        (0..self.rx.len()).find_map(|at| {
            let f = &self.rx[at..];
            if f.len() < 5 || f[0] != self.unit {
                return None;
            }
            let len = match f[1] {
                x if x == function => expect.len(),
                x if x == function | EXCEPTION => 5,
                _ => return None,
            };
            let refused = f[1] & EXCEPTION != 0;
            (f.len() >= len && crc_ok(&f[..len]) && (refused || expect.fits(f))).then_some((at, len))
        })
    }

    /// The first `n` bytes received are no answer to anything asked now:
    /// drop them, counting the frames among them. Returns that count.
    fn discard(&mut self, n: usize) -> u64 {
        if n == 0 {
            return 0;
        }
        let frames = count_frames(&self.rx[..n]);
        self.stats.discarded_answers.fetch_add(frames, Ordering::Relaxed);
        debug!(unit = self.unit, bytes = n, frames, "discarded what the cabinet sent unasked for");
        self.rx.drain(..n);
        frames
    }

    /// Read what the line has (waiting for it).
    async fn fill(&mut self) -> io::Result<()> {
        if self.wire.read_buf(&mut self.rx).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.bound();
        Ok(())
    }

    /// Take what has already arrived, without waiting.
    fn take_pending(&mut self) -> io::Result<()> {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let mut chunk = [0u8; MAX_FRAME];
        loop {
            let mut buf = ReadBuf::new(&mut chunk);
            match Pin::new(&mut self.wire).poll_read(&mut cx, &mut buf) {
                Poll::Pending => return Ok(()),
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Ready(Ok(())) if buf.filled().is_empty() => return Err(io::ErrorKind::UnexpectedEof.into()),
                Poll::Ready(Ok(())) => {
                    self.rx.extend_from_slice(buf.filled());
                    self.bound();
                }
            }
        }
    }

    /// More than two frames' worth in `rx`: the front is no answer (none
    /// is longer than a frame), and a chattering line must not grow it.
    fn bound(&mut self) {
        if self.rx.len() > 2 * MAX_FRAME {
            self.discard(self.rx.len() - MAX_FRAME);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::DuplexStream;

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut f = body.to_vec();
        f.extend_from_slice(&crc16(body).to_le_bytes());
        f
    }

    fn line() -> (RtuLine, DuplexStream, Arc<CabinetStats>) {
        let (ours, cabinet) = tokio::io::duplex(1024);
        let stats = Arc::new(CabinetStats::default());
        (RtuLine::new(Box::new(ours), 1, MIN_GAP, stats.clone()), cabinet, stats)
    }

    async fn request(cabinet: &mut DuplexStream, len: usize) -> Vec<u8> {
        let mut req = vec![0; len];
        cabinet.read_exact(&mut req).await.unwrap();
        assert!(crc_ok(&req), "{req:02X?}");
        req
    }

    #[test]
    fn crc_is_the_modbus_one() {
        // The read-holding-registers example of the Modbus serial line guide.
        assert_eq!(crc16(&[0x01, 0x03, 0x00, 0x00, 0x00, 0x0A]).to_le_bytes(), [0xC5, 0xCD]);
    }

    #[test]
    fn gap_is_three_and_a_half_characters_but_not_below_the_floor() {
        // 9600 8E1: 11 bits a character, 4.01 ms for 3.5 of them.
        assert_eq!(inter_frame_gap(9600, Parity::Even, 8, 1), Duration::from_nanos(4_010_416));
        assert_eq!(inter_frame_gap(115_200, Parity::None, 8, 1), MIN_GAP);
    }

    #[tokio::test]
    async fn only_the_matching_frame_is_taken_for_the_answer() {
        let (mut line, mut cabinet, stats) = line();
        // A late read answer on the line before the request is sent.
        cabinet.write_all(&frame(&[1, 0x04, 2, 0, 9])).await.unwrap();
        let cab = tokio::spawn(async move {
            let req = request(&mut cabinet, 8 + 1 + 4).await;
            assert_eq!(req[..7], [1, 0x10, 0, 40, 0, 2, 4]);
            // Another unit's answer, a read answer, garbage, then the echo.
            cabinet.write_all(&frame(&[2, 0x10, 0, 40, 0, 2])).await.unwrap();
            cabinet.write_all(&frame(&[1, 0x04, 2, 0, 7])).await.unwrap();
            cabinet.write_all(b"\xff\x00").await.unwrap();
            cabinet.write_all(&frame(&[1, 0x10, 0, 40, 0, 2])).await.unwrap();
            cabinet
        });
        assert!(matches!(line.write_multiple_registers(40, &[1, 2]).await, Ok(Ok(()))));
        assert_eq!(stats.discarded_answers.load(Ordering::Relaxed), 3);

        let mut cabinet = cab.await.unwrap();
        let cab = tokio::spawn(async move {
            request(&mut cabinet, 8).await;
            // A read answer with the wrong register count, then an exception.
            cabinet.write_all(&frame(&[1, 0x04, 2, 0, 7])).await.unwrap();
            cabinet.write_all(&frame(&[1, 0x84, 0x02])).await.unwrap();
        });
        let answer = line.read_input_registers(0, 2).await.unwrap();
        assert_eq!(answer, Err(ExceptionCode::IllegalDataAddress));
        assert_eq!(stats.discarded_answers.load(Ordering::Relaxed), 4);
        cab.await.unwrap();
    }

    /// The heartbeat read back (FC03) takes its own answer, not a late
    /// input read's of the same length.
    #[tokio::test]
    async fn a_holding_register_read_takes_its_own_answer() {
        let (mut line, mut cabinet, stats) = line();
        let cab = tokio::spawn(async move {
            let req = request(&mut cabinet, 8).await;
            assert_eq!(req[..6], [1, 0x03, 0, 40, 0, 1]);
            cabinet.write_all(&frame(&[1, 0x04, 2, 0, 9])).await.unwrap();
            cabinet.write_all(&frame(&[1, 0x03, 2, 0x9C, 0x41])).await.unwrap();
        });
        assert_eq!(line.read_holding_registers(40, 1).await.unwrap(), Ok(vec![40_001]));
        assert_eq!(stats.discarded_answers.load(Ordering::Relaxed), 1);
        cab.await.unwrap();
    }

    // A paused clock: the test's sleeps and the line's waits are virtual
    // time, so the bounds are exact whatever the host's load.
    #[tokio::test(start_paused = true)]
    async fn drain_waits_for_the_late_answer_then_the_gap_and_no_longer_than_told() {
        let (mut line, mut cabinet, _) = line();
        let patience = Duration::from_millis(500);
        let started = tokio::time::Instant::now();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            cabinet.write_all(&frame(&[1, 0x04, 2, 0, 9])).await.unwrap();
            // Keep the line open, silent.
            tokio::time::sleep(Duration::from_secs(5)).await;
        });
        assert_eq!(line.drain(patience).await.unwrap(), 1);
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(50) && took < Duration::from_millis(400), "{took:?}");

        let started = tokio::time::Instant::now();
        assert_eq!(line.drain(Duration::from_millis(100)).await.unwrap(), 0);
        assert!(started.elapsed() >= Duration::from_millis(100), "silent line: waited out");
    }
}
