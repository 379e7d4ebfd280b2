//! Is a video file whole? A judgement over its bytes, read through `Probe`:
//! the container's own structure (MP4 boxes, Matroska elements, RIFF chunks,
//! MPEG-TS packets) must reach exactly the end of the file, and neither the
//! head nor (where the container forbids it) the tail may be an unwritten
//! zero region. This is what catches a download client that creates a file at
//! its full size and fills it in any order (issue 14): the size and mtime can
//! stand still for hours while pieces are missing.
//!
//! Only evidence of incompleteness counts. A file of unknown format, or one
//! whose structure is too long to follow cheaply, gets no claim: vidsync
//! detects unfinished videos, it does not judge whether a file is a video.
//! A zero region in the middle of a file whose structure is intact (an
//! unfilled piece inside MP4's `mdat`) cannot be seen here; the scanner's hole
//! check catches it when the file is sparse.
//!
//! The only reads are small: the head, the tail, and for MP4, Matroska and AVI
//! one header per top-level box, element or chunk (at most `MAX_HEADERS`).

use std::fmt;
use std::io;

/// Random access to a file's bytes (a `File`, or a byte slice in tests).
pub trait Probe {
    /// Read up to `buf.len()` bytes at `offset`; fewer only at the end of the file.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize>;
}

impl Probe for &[u8] {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(self.len());
        let n = buf.len().min(self.len() - start);
        buf[..n].copy_from_slice(&self[start..start + n]);
        Ok(n)
    }
}

impl Probe for std::fs::File {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        // pread may return fewer bytes than asked before the end (a signal,
        // a network filesystem): loop until the buffer is full or EOF.
        let mut done = 0;
        while done < buf.len() {
            match FileExt::read_at(&*self, &mut buf[done..], offset + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }
}

/// The container the head identifies (None of these: no structural claim).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    /// MP4, MOV, M4V, 3GP: an `ftyp` box first.
    Mp4,
    /// Matroska and WebM: the EBML magic.
    Matroska,
    /// RIFF `AVI ` (with OpenDML `AVIX` extensions).
    Avi,
    /// MPEG transport stream, 188-byte packets or M2TS's 192.
    MpegTs,
    Unknown,
}

impl fmt::Display for Container {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Container::Mp4 => "MP4",
            Container::Matroska => "Matroska",
            Container::Avi => "AVI",
            Container::MpegTs => "MPEG-TS",
            Container::Unknown => "unknown",
        })
    }
}

/// Why a file is not complete yet; its Display is the text shown to the user
/// in `list --json` (`error`) and `status`, e.g. "incomplete: the MP4 boxes end at 1048576 of 4194304 bytes".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incomplete {
    /// The head is all zeros: no video starts so, it is not written yet.
    ZeroHead,
    /// The container's structure does not reach exactly the end of the file.
    Structure {
        container: Container,
        detail: String,
    },
    /// The last bytes are zeros where the container says they cannot be.
    ZeroTail {
        container: Container,
        zero_bytes: u64,
    },
}

impl fmt::Display for Incomplete {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Incomplete::ZeroHead => write!(
                f,
                "incomplete: the file begins with zeros (not written there yet)"
            ),
            Incomplete::Structure { detail, .. } => write!(f, "incomplete: {detail}"),
            Incomplete::ZeroTail {
                container,
                zero_bytes,
            } => write!(
                f,
                "incomplete: the last {zero_bytes} bytes of this {container} file are zeros (not written there yet)"
            ),
        }
    }
}

/// How much of the head decides the format and the zero head.
const HEAD: u64 = 4096;
/// How much of the tail must not be all zeros, and whose TS packets are checked.
const TAIL: u64 = 64 * 1024;
/// The longest chain of top-level boxes/elements/chunks followed. Real files
/// have a handful (fragmented MP4 a few per second of video); past this the
/// check would cost more than it is worth, so it makes no claim.
const MAX_HEADERS: usize = 300;

/// Judge a file of `size` bytes by its structure. Ok(container) when no
/// evidence says it is incomplete; Err when some does. Reads only a bounded
/// number of small pieces (the head, the tail, and for MP4/AVI one header per
/// top-level box/chunk, at most a few hundred reads; stop and return Ok with no
/// claim if a chain has more than that).
pub fn judge(probe: &mut dyn Probe, size: u64) -> io::Result<Result<Container, Incomplete>> {
    if size == 0 {
        // An empty file claims nothing; whether to upload it is not ours to say.
        return Ok(Ok(Container::Unknown));
    }
    let mut r = Reader { probe, size };
    let head = r.read(0, HEAD)?;
    if head.iter().all(|&b| b == 0) {
        return Ok(Err(Incomplete::ZeroHead));
    }
    let format = identify(&head);
    let container = format.container();
    let verdict = match format {
        Format::Mp4 => mp4(&mut r)?,
        Format::Matroska => matroska(&mut r)?,
        Format::Avi => avi(&mut r)?,
        Format::Ts { packet, sync } => ts(&mut r, packet, sync)?,
        Format::Unknown => Ok(Tail::Free),
    };
    match verdict {
        Err(detail) => Ok(Err(Incomplete::Structure { container, detail })),
        Ok(Tail::Free) => Ok(Ok(container)),
        Ok(Tail::NotZero) => {
            let len = TAIL.min(size);
            let tail = r.read(size - len, len)?;
            if tail.iter().all(|&b| b == 0) {
                Ok(Err(Incomplete::ZeroTail {
                    container,
                    zero_bytes: len,
                }))
            } else {
                Ok(Ok(container))
            }
        }
    }
}

/// Reads within the `size` the caller stat'ed.
struct Reader<'a> {
    probe: &'a mut dyn Probe,
    size: u64,
}

impl Reader<'_> {
    /// Up to `len` bytes at `offset`, cut at `size`. A file shorter than
    /// `size` changed under us: that is an error (judge it again later), not
    /// a verdict on bytes that are no longer there.
    fn read(&mut self, offset: u64, len: u64) -> io::Result<Vec<u8>> {
        let len = len.min(self.size.saturating_sub(offset));
        let mut buf = vec![0; usize::try_from(len).unwrap_or(usize::MAX)];
        let n = self.probe.read_at(offset, &mut buf)?;
        if n < buf.len() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "the file is shorter than {} bytes (read {n} at {offset}): it changed while being checked",
                    self.size
                ),
            ));
        }
        Ok(buf)
    }
}

/// What the structure says of the last bytes, when it holds.
#[derive(Debug, PartialEq, Eq)]
enum Tail {
    /// They may be zeros (padding, or no claim at all).
    Free,
    /// They are media or index data: all zeros means not written yet.
    NotZero,
}

/// A structural check: the tail rule, or why the file is incomplete.
type Check = Result<Tail, String>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Mp4,
    Matroska,
    Avi,
    /// Packets of `packet` bytes with the 0x47 sync byte at `sync` in each.
    Ts {
        packet: u64,
        sync: u64,
    },
    Unknown,
}

impl Format {
    fn container(self) -> Container {
        match self {
            Format::Mp4 => Container::Mp4,
            Format::Matroska => Container::Matroska,
            Format::Avi => Container::Avi,
            Format::Ts { .. } => Container::MpegTs,
            Format::Unknown => Container::Unknown,
        }
    }
}

const EBML_MAGIC: [u8; 4] = [0x1A, 0x45, 0xDF, 0xA3];
const SEGMENT_ID: u64 = 0x1853_8067;
const VOID_ID: u64 = 0xEC;
const TS_SYNC: u8 = 0x47;

fn identify(head: &[u8]) -> Format {
    if head.get(4..8) == Some(b"ftyp") {
        return Format::Mp4;
    }
    if head.get(0..4) == Some(&EBML_MAGIC) {
        return Format::Matroska;
    }
    if head.get(0..4) == Some(b"RIFF") && head.get(8..12) == Some(b"AVI ") {
        return Format::Avi;
    }
    // Three sync bytes a packet apart: one could be chance, three are not.
    for (packet, sync) in [(188u64, 0u64), (192, 4)] {
        let synced = (0..3).all(|i| {
            usize::try_from(i * packet + sync)
                .ok()
                .and_then(|at| head.get(at))
                == Some(&TS_SYNC)
        });
        if synced {
            return Format::Ts { packet, sync };
        }
    }
    Format::Unknown
}

/// A box or chunk type: four printable ASCII characters. A zero region
/// (unwritten) or random media bytes fail this.
fn is_fourcc(t: &[u8]) -> bool {
    t.len() == 4 && t.iter().all(|&b| b == b' ' || b.is_ascii_graphic())
}

fn fourcc(t: &[u8]) -> String {
    String::from_utf8_lossy(t).into_owned()
}

/// MP4/MOV: top-level boxes chain exactly to the end and include `moov`.
fn mp4(r: &mut Reader) -> io::Result<Check> {
    let size = r.size;
    let broken = |off: u64| Ok(Err(format!("the MP4 boxes end at {off} of {size} bytes")));
    let mut off = 0u64;
    let mut moov = false;
    let mut last = [0u8; 4];
    for _ in 0..MAX_HEADERS {
        if off == size {
            if !moov {
                return Ok(Err(format!(
                    "the MP4 file has no moov box (its index, written when the file is finished), in {size} bytes"
                )));
            }
            // free/skip are padding, which may be zeros; mdat and moov are not.
            let tail = match &last {
                b"mdat" | b"moov" => Tail::NotZero,
                _ => Tail::Free,
            };
            return Ok(Ok(tail));
        }
        let h = r.read(off, 16)?;
        let (Some(len), Some(kind)) = (h.get(0..4), h.get(4..8)) else {
            return broken(off);
        };
        if !is_fourcc(kind) {
            return broken(off);
        }
        let len = u64::from(u32::from_be_bytes([len[0], len[1], len[2], len[3]]));
        let end = match len {
            // "To the end of the file": only the last box may say so, and
            // then it ends where the file does.
            0 => size,
            1 => {
                let Some(large) = h.get(8..16) else {
                    return broken(off);
                };
                let mut b = [0u8; 8];
                b.copy_from_slice(large);
                let large = u64::from_be_bytes(b);
                if large < 16 {
                    return broken(off);
                }
                off.saturating_add(large)
            }
            2..8 => return broken(off),
            n => off + n,
        };
        if end > size {
            return Ok(Err(format!(
                "the MP4 box {} at {off} runs to {end}, past the end of the file at {size} bytes",
                fourcc(kind)
            )));
        }
        if kind == b"moov" {
            moov = true;
        }
        last.copy_from_slice(kind);
        off = end;
    }
    Ok(Ok(Tail::Free))
}

/// An EBML variable-length integer at the start of `b`: (value, length,
/// all data bits set). With `marker` the length bit is kept (element IDs
/// are written so); without it, it is the value (element sizes).
fn vint(b: &[u8], marker: bool, max_len: u32) -> Option<(u64, u64, bool)> {
    let first = *b.first()?;
    let len = first.leading_zeros() + 1;
    if first == 0 || len > max_len {
        return None;
    }
    let bytes = b.get(..len as usize)?;
    let mut v = 0u64;
    for &x in bytes {
        v = (v << 8) | u64::from(x);
    }
    let data_bits = 7 * len;
    let mask = (1u64 << data_bits) - 1;
    let all_ones = v & mask == mask;
    Some((if marker { v } else { v & mask }, u64::from(len), all_ones))
}

/// Matroska/WebM: top-level elements (the EBML header, the Segment, maybe
/// more) chain exactly to the end; a Segment whose size is "unknown" (live
/// writers) makes no claim on where the file ends.
fn matroska(r: &mut Reader) -> io::Result<Check> {
    let size = r.size;
    let mut off = 0u64;
    let mut segment = false;
    for i in 0..MAX_HEADERS {
        if off == size {
            if !segment {
                return Ok(Err(format!(
                    "the Matroska file has no Segment after its header, in {size} bytes"
                )));
            }
            return Ok(Ok(Tail::NotZero));
        }
        // An ID is at most 4 bytes, a size at most 8.
        let h = r.read(off, 12)?;
        let Some((id, id_len, _)) = vint(&h, true, 4) else {
            return Ok(Err(format!(
                "the Matroska elements end at {off} of {size} bytes"
            )));
        };
        let rest = h.get(id_len as usize..).unwrap_or(&[]);
        let Some((data, size_len, unknown)) = vint(rest, false, 8) else {
            return Ok(Err(format!(
                "the Matroska elements end at {off} of {size} bytes"
            )));
        };
        // After the EBML header comes the Segment (a Void between is legal).
        if i > 0 && !segment && id != SEGMENT_ID && id != VOID_ID {
            return Ok(Err(format!(
                "the Matroska header is followed by no Segment (at {off} of {size} bytes)"
            )));
        }
        if id == SEGMENT_ID {
            segment = true;
        }
        if unknown {
            // The size was never written back: where the element ends is not
            // said, so neither is where the file should. Zeros at the end of
            // a Matroska file are still not media.
            return Ok(Ok(Tail::NotZero));
        }
        let end = off.saturating_add(id_len + size_len).saturating_add(data);
        if end > size {
            let what = if id == SEGMENT_ID {
                "Segment".to_string()
            } else {
                format!("element {id:#x}")
            };
            return Ok(Err(format!(
                "the Matroska {what} at {off} runs to {end}, past the end of the file at {size} bytes (cut short)"
            )));
        }
        off = end;
    }
    Ok(Ok(Tail::Free))
}

/// AVI: RIFF chunks (`AVI `, then OpenDML `AVIX` past 1 GB) chain exactly
/// to the end of the file.
fn avi(r: &mut Reader) -> io::Result<Check> {
    let size = r.size;
    let broken = |off: u64| Ok(Err(format!("the AVI chunks end at {off} of {size} bytes")));
    let mut off = 0u64;
    let mut last = [0u8; 4];
    for _ in 0..MAX_HEADERS {
        if off == size {
            // JUNK is padding, which writers fill with zeros.
            let tail = if &last == b"JUNK" {
                Tail::Free
            } else {
                Tail::NotZero
            };
            return Ok(Ok(tail));
        }
        let h = r.read(off, 8)?;
        let (Some(kind), Some(len)) = (h.get(0..4), h.get(4..8)) else {
            return broken(off);
        };
        if !is_fourcc(kind) {
            return broken(off);
        }
        let len = u64::from(u32::from_le_bytes([len[0], len[1], len[2], len[3]]));
        let mut end = off + 8 + len + (len & 1);
        // Some writers leave out the pad byte of an odd last chunk.
        if len & 1 == 1 && end == size + 1 {
            end = size;
        }
        if end > size {
            return Ok(Err(format!(
                "the AVI chunk {} at {off} runs to {end}, past the end of the file at {size} bytes",
                fourcc(kind)
            )));
        }
        last.copy_from_slice(kind);
        off = end;
    }
    Ok(Ok(Tail::Free))
}

/// MPEG-TS/M2TS: whole packets, and every packet of the tail starts with
/// the sync byte (an unwritten zero tail has none).
fn ts(r: &mut Reader, packet: u64, sync: u64) -> io::Result<Check> {
    let size = r.size;
    let name = if packet == 188 { "MPEG-TS" } else { "M2TS" };
    if size % packet != 0 {
        return Ok(Err(format!(
            "the {name} file is {size} bytes, not a whole number of {packet}-byte packets"
        )));
    }
    let start = size.saturating_sub(TAIL).div_ceil(packet) * packet;
    let tail = r.read(start, size - start)?;
    for (i, p) in tail.chunks(packet as usize).enumerate() {
        if p.get(sync as usize) != Some(&TS_SYNC) {
            let at = start + i as u64 * packet;
            return Ok(Err(format!(
                "the {name} packet at {at} of {size} bytes has no sync byte"
            )));
        }
    }
    Ok(Ok(Tail::Free))
}
