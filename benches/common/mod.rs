//! What the benchmarks share: small well-formed videos.

/// A small, well-formed MP4: ftyp, an mdat of `mdat_len` pseudo-random
/// bytes from `seed`, moov (so the structure check follows a real box chain
/// and reads the tail, as for a finished download).
pub fn mp4(seed: u64, mdat_len: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut push_box = |kind: &[u8; 4], body: &[u8]| {
        out.extend_from_slice(&((body.len() + 8) as u32).to_be_bytes());
        out.extend_from_slice(kind);
        out.extend_from_slice(body);
    };
    push_box(b"ftyp", b"isom\0\0\x02\0isomiso2mp41");
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mdat: Vec<u8> = (0..mdat_len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    push_box(b"mdat", &mdat);
    push_box(b"moov", &[7u8; 1024]);
    out
}
