//! What the unit tests of several modules share.

/// A xorshift64 generator (Marsaglia, 2003): reproducible noise for tests, with no
/// dependency.
pub(crate) struct XorShift(u64);

impl XorShift {
    /// The generator the tests use, always from the same seed.
    pub(crate) fn new() -> Self {
        Self(0x2545_f491_4f6c_dd1d)
    }

    /// The next 64 bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// The next number below `n`.
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// `len` bytes of noise, which deflate cannot shrink; the same bytes on every call.
pub(crate) fn noise(len: usize) -> Vec<u8> {
    let mut x = XorShift::new();
    (0..len).map(|_| x.next_u64() as u8).collect()
}
