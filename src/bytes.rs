//! A bounds-checked reader of little-endian fields, shared by the codecs of the header,
//! records and leases: every read past the end is [`Truncated`], never a panic.

/// The bytes ended inside a field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Truncated;

/// Reads fields front to back from a byte slice.
pub(crate) struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    /// The next `n` bytes.
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], Truncated> {
        if n > self.data.len() {
            return Err(Truncated);
        }
        let (head, tail) = self.data.split_at(n);
        self.data = tail;
        Ok(head)
    }

    /// The next `N` bytes, as an array.
    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], Truncated> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, Truncated> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, Truncated> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, Truncated> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, Truncated> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// `len u8 | bytes`.
    pub(crate) fn short_bytes(&mut self) -> Result<&'a [u8], Truncated> {
        let n = usize::from(self.u8()?);
        self.take(n)
    }

    /// How many bytes are left.
    pub(crate) fn remaining(&self) -> usize {
        self.data.len()
    }

    /// The bytes not read yet.
    pub(crate) fn rest(&self) -> &'a [u8] {
        self.data
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_little_endian_fields_and_stops_at_the_end() {
        let bytes = [1u8, 2, 0, 3, 0, 0, 0, 2, b'h', b'i', 9];
        let mut r = Reader::new(&bytes);
        assert_eq!(r.u8(), Ok(1));
        assert_eq!(r.u16(), Ok(2));
        assert_eq!(r.u32(), Ok(3));
        assert_eq!(r.short_bytes(), Ok(&b"hi"[..]));
        assert_eq!(r.remaining(), 1);
        assert_eq!(r.rest(), [9]);
        assert_eq!(r.u16(), Err(Truncated));
        assert_eq!(r.u8(), Ok(9), "a failed read consumes nothing");
        assert_eq!(r.u8(), Err(Truncated));
        assert_eq!(Reader::new(&[3, 1]).short_bytes(), Err(Truncated));
        assert_eq!(Reader::new(&[0; 7]).u64(), Err(Truncated));
    }
}
