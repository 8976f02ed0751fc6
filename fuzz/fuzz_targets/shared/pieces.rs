//! How the dialogue targets cut their input into reads, as the event loop would get them.

/// `input` in pieces of 1 to 16 bytes, their sizes drawn from `seed`.
pub fn pieces(input: &[u8], seed: u8) -> Vec<&[u8]> {
    let mut state = u32::from(seed) | 0x100;
    let mut out = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let (piece, tail) = rest.split_at((1 + state as usize % 16).min(rest.len()));
        out.push(piece);
        rest = tail;
    }
    out
}
