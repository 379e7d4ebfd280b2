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
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(self.len());
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

/// How much of the tail is looked at first (one filesystem block).
const TAIL_FIRST: u64 = 4096;
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
            // The last block first: a finished file almost never ends in a
            // block of zeros, so the whole tail is read only when it does.
            let last = TAIL_FIRST.min(len);
            if r.read(size - last, last)?.iter().any(|&b| b != 0) {
                return Ok(Ok(container));
            }
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
        let header = vint(&h, true, 4).and_then(|(id, id_len, _)| {
            let rest = h.get(id_len as usize..)?;
            let (data, size_len, unknown) = vint(rest, false, 8)?;
            Some((id, id_len, data, size_len, unknown))
        });
        let Some((id, id_len, data, size_len, unknown)) = header else {
            if h.len() < 12 && h.first().is_some_and(|&b| b != 0) {
                return Ok(Err(format!(
                    "the Matroska element header at {off} is cut short by the end of the file at {size} bytes"
                )));
            }
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
    if !size.is_multiple_of(packet) {
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

#[cfg(test)]
mod tests {
    use super::*;

    const KB: usize = 1024;

    /// `n` bytes of media-like data: never a zero, never a sync pattern by chance.
    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i % 251) as u8 + 1).collect()
    }

    fn judged(bytes: &[u8]) -> Result<Container, Incomplete> {
        judge(&mut &bytes[..], bytes.len() as u64).unwrap()
    }

    fn structure(got: &Result<Container, Incomplete>, container: Container, text: &str) {
        match got {
            Err(Incomplete::Structure {
                container: c,
                detail,
            }) => {
                assert_eq!(*c, container, "{detail}");
                assert!(detail.contains(text), "{detail:?} lacks {text:?}");
            }
            other => panic!("not a Structure verdict with {text:?}: {other:?}"),
        }
    }

    fn zero_tail(got: &Result<Container, Incomplete>, container: Container) {
        assert_eq!(
            *got,
            Err(Incomplete::ZeroTail {
                container,
                zero_bytes: TAIL
            })
        );
    }

    /// The last `n` bytes zeroed, the size kept (a preallocated file).
    fn zeroed_tail(mut b: Vec<u8>, n: usize) -> Vec<u8> {
        let len = b.len();
        b[len - n..].fill(0);
        b
    }

    // --- MP4 ---------------------------------------------------------------

    fn mp4_box(kind: &[u8; 4], payload: &[u8]) -> Vec<u8> {
        let mut b = ((payload.len() + 8) as u32).to_be_bytes().to_vec();
        b.extend_from_slice(kind);
        b.extend_from_slice(payload);
        b
    }

    fn mp4_large(kind: &[u8; 4], payload: &[u8]) -> Vec<u8> {
        let mut b = 1u32.to_be_bytes().to_vec();
        b.extend_from_slice(kind);
        b.extend_from_slice(&((payload.len() + 16) as u64).to_be_bytes());
        b.extend_from_slice(payload);
        b
    }

    fn mp4_to_end(kind: &[u8; 4], payload: &[u8]) -> Vec<u8> {
        let mut b = 0u32.to_be_bytes().to_vec();
        b.extend_from_slice(kind);
        b.extend_from_slice(payload);
        b
    }

    fn ftyp() -> Vec<u8> {
        mp4_box(b"ftyp", b"isom\0\0\x02\0isomiso2avc1mp41")
    }

    fn mp4(boxes: &[Vec<u8>]) -> Vec<u8> {
        let mut b = ftyp();
        for x in boxes {
            b.extend_from_slice(x);
        }
        b
    }

    #[test]
    fn mp4_boxes_that_chain_to_the_end_with_moov_are_complete() {
        let moov = mp4_box(b"moov", &data(2 * KB));
        let mdat = data(200 * KB);
        let cases = [
            ("faststart", mp4(&[moov.clone(), mp4_box(b"mdat", &mdat)])),
            ("moov last", mp4(&[mp4_box(b"mdat", &mdat), moov.clone()])),
            (
                "64-bit mdat",
                mp4(&[moov.clone(), mp4_large(b"mdat", &mdat)]),
            ),
            (
                "size 0 = to the end",
                mp4(&[moov.clone(), mp4_to_end(b"mdat", &mdat)]),
            ),
            (
                "free padding of zeros last",
                mp4(&[
                    mp4_box(b"mdat", &mdat),
                    moov.clone(),
                    mp4_box(b"free", &[0; 100 * KB]),
                ]),
            ),
            (
                "smaller than the head",
                mp4(&[mp4_box(b"moov", &data(300)), mp4_box(b"mdat", &data(500))]),
            ),
        ];
        for (name, b) in cases {
            assert_eq!(judged(&b), Ok(Container::Mp4), "{name}");
        }
    }

    #[test]
    fn mp4_cut_short_or_not_filled_is_incomplete() {
        let moov = mp4_box(b"moov", &data(2 * KB));
        let mdat = mp4_box(b"mdat", &data(200 * KB));
        let moov_last = mp4(&[mdat.clone(), moov.clone()]);
        let n = moov_last.len();

        // Cut anywhere: a box runs past the end.
        for cut in [n * 6 / 10, n - 1, 40] {
            structure(
                &judged(&moov_last[..cut]),
                Container::Mp4,
                "past the end of the file",
            );
        }
        // Cut exactly between boxes: the index is missing.
        structure(
            &judged(&moov_last[..n - moov.len()]),
            Container::Mp4,
            "no moov box",
        );
        // Preallocated at full size, the moov not written yet: a zero header.
        let unfilled = zeroed_tail(moov_last.clone(), moov.len());
        let got = judged(&unfilled);
        structure(&got, Container::Mp4, "the MP4 boxes end at");
        assert_eq!(
            got.unwrap_err().to_string(),
            format!(
                "incomplete: the MP4 boxes end at {} of {n} bytes",
                n - moov.len()
            )
        );
        // A few bytes after the last box: no room for a header.
        let mut short = mp4(&[moov.clone(), mdat.clone()]);
        short.extend_from_slice(b"abc");
        structure(&judged(&short), Container::Mp4, "the MP4 boxes end at");
        // A header smaller than itself, a type that is not text, a largesize below 16.
        for bad in [
            [&[0, 0, 0, 4][..], b"free"].concat(),
            [&[0, 0, 1, 0][..], &[0xff, 0xfe, 0x00, 0x01]].concat(),
            [&[0, 0, 0, 1][..], b"mdat", &8u64.to_be_bytes()].concat(),
        ] {
            let mut b = mp4(std::slice::from_ref(&moov));
            b.extend_from_slice(&bad);
            b.extend_from_slice(&data(KB));
            let got = judged(&b);
            assert!(
                matches!(got, Err(Incomplete::Structure { .. })),
                "{bad:?}: {got:?}"
            );
        }
        // No moov at all.
        structure(
            &judged(&mp4(std::slice::from_ref(&mdat))),
            Container::Mp4,
            "no moov",
        );
        // A largesize box cut short.
        let large = mp4(&[moov.clone(), mp4_large(b"mdat", &data(100 * KB))]);
        structure(
            &judged(&large[..large.len() - 1]),
            Container::Mp4,
            "past the end",
        );
    }

    #[test]
    fn mp4_zero_tail_in_mdat_or_moov_is_incomplete() {
        let moov = mp4_box(b"moov", &data(2 * KB));
        let faststart = mp4(&[moov.clone(), mp4_box(b"mdat", &data(200 * KB))]);
        zero_tail(
            &judged(&zeroed_tail(faststart, TAIL as usize)),
            Container::Mp4,
        );
        // moov is the last box but the zeros run into mdat: its bytes are zero.
        let moov_last = mp4(&[mp4_box(b"mdat", &data(200 * KB)), moov.clone()]);
        let b = zeroed_tail(moov_last, TAIL as usize);
        // ... which breaks the chain first (the moov header is zeros).
        structure(&judged(&b), Container::Mp4, "the MP4 boxes end at");
        // A moov of zeros with a valid header: the zero tail rule.
        let mut b = mp4(&[mp4_box(b"mdat", &data(200 * KB))]);
        b.extend_from_slice(&mp4_box(b"moov", &[0; 70 * KB]));
        zero_tail(&judged(&b), Container::Mp4);
        // A 64-bit, size-0 mdat: same rule.
        let b = mp4(&[moov.clone(), mp4_to_end(b"mdat", &data(200 * KB))]);
        zero_tail(&judged(&zeroed_tail(b, TAIL as usize)), Container::Mp4);
    }

    #[test]
    fn mp4_with_more_boxes_than_followed_makes_no_claim() {
        let mut boxes = vec![mp4_box(b"moov", &data(100))];
        boxes.extend((0..MAX_HEADERS).map(|_| mp4_box(b"skip", &data(10))));
        let mut b = mp4(&boxes);
        b.extend_from_slice(&[0; 100]);
        assert_eq!(judged(&b), Ok(Container::Mp4));
    }

    // --- Matroska ------------------------------------------------------------

    fn ebml_header() -> Vec<u8> {
        // DocType "matroska" and versions; the content is not parsed.
        let body = [
            0x42, 0x86, 0x81, 0x01, 0x42, 0x82, 0x88, b'm', b'a', b't', b'r', b'o', b's', b'k',
            b'a',
        ];
        let mut b = EBML_MAGIC.to_vec();
        b.push(0x80 | body.len() as u8);
        b.extend_from_slice(&body);
        b
    }

    /// A Segment with an 8-byte size, or "unknown" (all ones).
    fn segment(payload: &[u8], unknown: bool) -> Vec<u8> {
        let mut b = vec![0x18, 0x53, 0x80, 0x67];
        if unknown {
            b.extend_from_slice(&[0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        } else {
            let mut size = (payload.len() as u64).to_be_bytes();
            size[0] = 0x01;
            b.extend_from_slice(&size);
        }
        b.extend_from_slice(payload);
        b
    }

    fn mkv(payload: &[u8], unknown: bool) -> Vec<u8> {
        [ebml_header(), segment(payload, unknown)].concat()
    }

    #[test]
    fn matroska_segment_that_ends_with_the_file_is_complete() {
        let body = data(200 * KB);
        let void = [0xEC, 0x84, 1, 2, 3, 4];
        let small_segment = [&[0x18, 0x53, 0x80, 0x67, 0x80 | 50][..], &data(50)].concat();
        let cases = [
            ("sized", mkv(&body, false)),
            ("unknown size", mkv(&body, true)),
            ("unknown size, cut", mkv(&body, true)[..150 * KB].to_vec()),
            (
                "a Void before the Segment",
                [ebml_header(), void.to_vec(), segment(&body, false)].concat(),
            ),
            ("1-byte size", [ebml_header(), small_segment].concat()),
            (
                "two segments",
                [mkv(&body, false), mkv(&data(KB), false)].concat(),
            ),
        ];
        for (name, b) in cases {
            assert_eq!(judged(&b), Ok(Container::Matroska), "{name}");
        }
    }

    #[test]
    fn matroska_cut_short_or_not_filled_is_incomplete() {
        let b = mkv(&data(200 * KB), false);
        let n = b.len();
        for cut in [n * 6 / 10, n - 1, 30] {
            structure(&judged(&b[..cut]), Container::Matroska, "cut short");
        }
        // Cut inside the EBML header, before the Segment starts.
        structure(&judged(&b[..10]), Container::Matroska, "runs to");
        // Declared shorter than the file, then zeros: the rest is unwritten.
        let mut more = mkv(&data(100 * KB), false);
        more.extend_from_slice(&[0; 100 * KB]);
        structure(
            &judged(&more),
            Container::Matroska,
            "the Matroska elements end at",
        );
        // The header followed by something else than a Segment.
        let cluster = [&[0x1F, 0x43, 0xB6, 0x75, 0x84][..], &data(4)].concat();
        structure(
            &judged(&[ebml_header(), cluster].concat()),
            Container::Matroska,
            "no Segment",
        );
        // Only the header.
        structure(&judged(&ebml_header()), Container::Matroska, "no Segment");
        // Zero tail, sized or not.
        for unknown in [false, true] {
            let b = zeroed_tail(mkv(&data(200 * KB), unknown), TAIL as usize);
            zero_tail(&judged(&b), Container::Matroska);
        }
    }

    // --- AVI -----------------------------------------------------------------

    fn riff(kind: &[u8; 4], form: &[u8; 4], payload: &[u8]) -> Vec<u8> {
        let len = payload.len() + 4;
        let mut b = kind.to_vec();
        b.extend_from_slice(&(len as u32).to_le_bytes());
        b.extend_from_slice(form);
        b.extend_from_slice(payload);
        if len % 2 == 1 {
            b.push(0);
        }
        b
    }

    #[test]
    fn avi_riff_chunks_that_end_with_the_file_are_complete() {
        let first = riff(b"RIFF", b"AVI ", &data(100 * KB));
        let odd = riff(b"RIFF", b"AVI ", &data(100 * KB + 1));
        let cases = [
            ("one RIFF", first.clone()),
            (
                "OpenDML AVIX chain",
                [
                    first.clone(),
                    riff(b"RIFF", b"AVIX", &data(90 * KB)),
                    riff(b"RIFF", b"AVIX", &data(80 * KB + 3)),
                ]
                .concat(),
            ),
            ("odd size, padded", odd.clone()),
            ("odd size, pad left out", odd[..odd.len() - 1].to_vec()),
            (
                "JUNK of zeros last",
                [first.clone(), riff(b"JUNK", b"\0\0\0\0", &[0; 70 * KB])].concat(),
            ),
        ];
        for (name, b) in cases {
            assert_eq!(judged(&b), Ok(Container::Avi), "{name}");
        }
    }

    #[test]
    fn avi_cut_short_or_not_filled_is_incomplete() {
        let b = riff(b"RIFF", b"AVI ", &data(200 * KB));
        let n = b.len();
        for cut in [n * 6 / 10, n - 1, 20] {
            structure(&judged(&b[..cut]), Container::Avi, "past the end");
        }
        let chain = [
            riff(b"RIFF", b"AVI ", &data(100 * KB)),
            riff(b"RIFF", b"AVIX", &data(100 * KB)),
        ]
        .concat();
        structure(
            &judged(&chain[..chain.len() - 10]),
            Container::Avi,
            "the AVI chunk RIFF at",
        );
        // The first RIFF written, the AVIX not yet.
        let unfilled = zeroed_tail(chain.clone(), 100 * KB + 12);
        structure(&judged(&unfilled), Container::Avi, "the AVI chunks end at");
        // A few bytes after the last chunk.
        let mut short = b.clone();
        short.extend_from_slice(b"RIF");
        structure(&judged(&short), Container::Avi, "the AVI chunks end at");
        zero_tail(&judged(&zeroed_tail(b, TAIL as usize)), Container::Avi);
        zero_tail(&judged(&zeroed_tail(chain, TAIL as usize)), Container::Avi);
    }

    // --- MPEG-TS -------------------------------------------------------------

    fn ts_stream(packets: usize, m2ts: bool) -> Vec<u8> {
        let mut b = Vec::new();
        for i in 0..packets {
            if m2ts {
                b.extend_from_slice(&(i as u32 | 0x4000_0000).to_be_bytes());
            }
            b.push(TS_SYNC);
            b.extend_from_slice(&data(187));
        }
        b
    }

    #[test]
    fn mpeg_ts_and_m2ts_with_whole_packets_synced_to_the_end_are_complete() {
        for m2ts in [false, true] {
            for packets in [3, 20, 2000] {
                let b = ts_stream(packets, m2ts);
                assert_eq!(judged(&b), Ok(Container::MpegTs), "{m2ts} {packets}");
            }
        }
    }

    #[test]
    fn mpeg_ts_and_m2ts_cut_or_not_filled_are_incomplete() {
        for (m2ts, packet) in [(false, 188), (true, 192)] {
            let b = ts_stream(2000, m2ts);
            let n = b.len();
            for cut in [n * 6 / 10 + 1, n - 1] {
                structure(
                    &judged(&b[..cut]),
                    Container::MpegTs,
                    &format!("not a whole number of {packet}-byte packets"),
                );
            }
            // Whole packets, but the last ones zero.
            let z = zeroed_tail(b.clone(), packet * 10);
            structure(&judged(&z), Container::MpegTs, "has no sync byte");
            // A packet of garbage in the tail.
            let mut g = b.clone();
            g[n - packet * 5..n - packet * 4].fill(0x11);
            structure(
                &judged(&g),
                Container::MpegTs,
                &format!("packet at {} of {n}", n - packet * 5),
            );
        }
        // Two packets are not enough to call it TS.
        assert_eq!(judged(&ts_stream(2, false)), Ok(Container::Unknown));
    }

    // --- any format ------------------------------------------------------------

    #[test]
    fn a_zero_head_is_incomplete_whatever_follows() {
        let mut b = vec![0u8; 4 * KB];
        b.extend_from_slice(&data(100 * KB));
        assert_eq!(judged(&b), Err(Incomplete::ZeroHead));
        // Shorter than the head.
        assert_eq!(judged(&[0; 100]), Err(Incomplete::ZeroHead));
        assert_eq!(judged(&[0]), Err(Incomplete::ZeroHead));
        // One byte written in the head is enough to start (an unknown format).
        b[100] = 1;
        assert_eq!(judged(&b), Ok(Container::Unknown));
        // The head of a known format zeroed.
        let mut m = mkv(&data(10 * KB), false);
        m[..4 * KB].fill(0);
        assert_eq!(judged(&m), Err(Incomplete::ZeroHead));
    }

    #[test]
    fn unknown_formats_and_empty_files_get_no_claim() {
        assert_eq!(judged(&[]), Ok(Container::Unknown));
        assert_eq!(judged(b"hello"), Ok(Container::Unknown));
        // A zero tail means nothing in a format we cannot read.
        let b = zeroed_tail(data(200 * KB), TAIL as usize);
        assert_eq!(judged(&b), Ok(Container::Unknown));
        // RIFF but not AVI (a WAV): no claim.
        let wav = riff(b"RIFF", b"WAVE", &data(KB));
        assert_eq!(judged(&wav[..100]), Ok(Container::Unknown));
    }

    #[test]
    fn every_message_starts_with_incomplete() {
        let all = [
            Incomplete::ZeroHead,
            Incomplete::Structure {
                container: Container::Avi,
                detail: "x".into(),
            },
            Incomplete::ZeroTail {
                container: Container::Matroska,
                zero_bytes: 65536,
            },
        ];
        for i in all {
            assert!(i.to_string().starts_with("incomplete: "), "{i}");
        }
        assert_eq!(
            Incomplete::ZeroTail {
                container: Container::Matroska,
                zero_bytes: 65536
            }
            .to_string(),
            "incomplete: the last 65536 bytes of this Matroska file are zeros (not written there yet)"
        );
    }

    #[test]
    fn a_file_shorter_than_its_size_is_an_error_not_a_verdict() {
        let b = mkv(&data(10 * KB), false);
        let err = judge(&mut &b[..], b.len() as u64 + 100).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn a_real_file_is_read_through_its_probe() {
        use std::io::Write;
        let mut f = tempfile::tempfile().unwrap();
        let b = mp4(&[
            mp4_box(b"moov", &data(KB)),
            mp4_box(b"mdat", &data(100 * KB)),
        ]);
        f.write_all(&b).unwrap();
        assert_eq!(judge(&mut f, b.len() as u64).unwrap(), Ok(Container::Mp4));
        f.write_all(&[0; TAIL as usize]).unwrap();
        structure(
            &judge(&mut f, b.len() as u64 + TAIL).unwrap(),
            Container::Mp4,
            "the MP4 boxes end at",
        );
    }
}
