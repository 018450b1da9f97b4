//! RFC 6455 §5.3: the client's masking of payloads, undone in place.

/// RFC 6455 §5.3: XOR with the 4-byte mask.
///
/// 128 bytes a turn as eight 128-bit words, then at most one block each of 64, 32 and 16
/// bytes, one word each of 8 and 4 bytes, then at most 3 bytes. Every step starts at a
/// multiple of 4 bytes, so the mask always lines up with it.
///
/// On x86_64 without target features beyond the baseline (SSE2), the compiler turns each
/// 128-bit XOR into two 64-bit XORs straight into memory: one instruction for 8 bytes,
/// where an SSE2 XOR of 16 bytes takes three (load, XOR, store). Counted with callgrind,
/// this takes 30 instructions for 20 bytes and 2 460 for 16 KiB. 32 bytes a turn took 26
/// and 2 850 (the rest is the loop's own instructions), a loop of 64-bit words and single
/// bytes 83 and 4 680, and 64 bytes a turn XORed with a 64-byte pattern array (which the
/// compiler vectorizes with SSE2) 166 and 3 980. CPU time for 16 KiB, best of 12 runs on
/// the 2-core machine of `BENCHMARKS.md` (too noisy to say more): this 0.61 µs, 32 bytes a
/// turn 0.80 µs, the SSE2 form (more instructions, fewer micro-ops) 0.43 µs; any of them is
/// a few percent of the system calls around it. Wider vectors (AVX2, 32 bytes for two
/// instructions) need runtime detection, which takes `unsafe` code (this crate has none),
/// or a build for a newer CPU: built for `x86-64-v3`, this loop stays as it is, and the
/// pattern-array form becomes AVX2 (1 590 instructions for 16 KiB).
pub(super) fn apply_mask(buf: &mut [u8], mask: [u8; 4]) {
    let m32 = u32::from_ne_bytes(mask);
    let m64 = u64::from(m32) << 32 | u64::from(m32);
    let m128 = u128::from(m64) << 64 | u128::from(m64);
    let mut chunks = buf.chunks_exact_mut(128);
    for chunk in &mut chunks {
        xor_words(chunk, m128);
    }
    let mut rest = chunks.into_remainder();
    for block in [64, 32, 16] {
        if rest.len() >= block {
            let (words, tail) = rest.split_at_mut(block);
            xor_words(words, m128);
            rest = tail;
        }
    }
    if rest.len() >= 8 {
        let (word, tail) = rest.split_at_mut(8);
        let x = u64::from_ne_bytes((&*word).try_into().expect("8 bytes")) ^ m64;
        word.copy_from_slice(&x.to_ne_bytes());
        rest = tail;
    }
    if rest.len() >= 4 {
        let (word, tail) = rest.split_at_mut(4);
        let x = u32::from_ne_bytes((&*word).try_into().expect("4 bytes")) ^ m32;
        word.copy_from_slice(&x.to_ne_bytes());
        rest = tail;
    }
    for (b, m) in rest.iter_mut().zip(mask) {
        *b ^= m;
    }
}

/// XORs `block`, a multiple of 16 bytes long, with `mask` a 128-bit word at a time.
#[inline(always)]
fn xor_words(block: &mut [u8], mask: u128) {
    for word in block.chunks_exact_mut(16) {
        let x = u128::from_ne_bytes((&*word).try_into().expect("16 bytes")) ^ mask;
        word.copy_from_slice(&x.to_ne_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytewise(data: &[u8], mask: [u8; 4]) -> Vec<u8> {
        data.iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4])
            .collect()
    }

    #[test]
    fn mask_matches_bytewise_xor() {
        let mask = [0xA1, 0xB2, 0xC3, 0xD4];
        // Every length to past two whole turns, and the sizes around each block boundary.
        let lengths = (0..300).chain([
            383, 384, 385, 1000, 1023, 1024, 1025, 4095, 4096, 4097, 16_383, 16_384, 16_387,
        ]);
        for len in lengths {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let mut fast = data.clone();
            apply_mask(&mut fast, mask);
            assert_eq!(fast, bytewise(&data, mask), "length {len}");
        }
    }

    #[test]
    fn mask_matches_bytewise_xor_at_every_offset() {
        // The payload's start in memory (its alignment) and where in the mask it starts.
        let data: Vec<u8> = (0..600).map(|i| (i * 13 + 1) as u8).collect();
        let mask = [0x01, 0x80, 0x7F, 0xFF];
        for offset in 0..32 {
            for len in [
                0, 1, 3, 4, 5, 15, 16, 17, 31, 33, 63, 65, 127, 128, 129, 255, 257, 500,
            ] {
                let mut buf = data.clone();
                apply_mask(&mut buf[offset..offset + len], mask);
                let mut expected = data.clone();
                expected[offset..offset + len]
                    .copy_from_slice(&bytewise(&data[offset..offset + len], mask));
                assert_eq!(buf, expected, "offset {offset}, length {len}");
            }
        }
    }

    #[test]
    fn masking_twice_restores_the_payload() {
        let data: Vec<u8> = (0..1500).map(|i| (i * 31) as u8).collect();
        for mask in [[0, 0, 0, 0], [0xFF; 4], [1, 2, 3, 4]] {
            let mut buf = data.clone();
            apply_mask(&mut buf, mask);
            apply_mask(&mut buf, mask);
            assert_eq!(buf, data);
        }
    }
}
