//! Eight RSA signatures at once with Intel's crypto_mb (part of the Intel Cryptography
//! Primitives Library, Apache-2.0), which spreads eight private-key operations over the lanes
//! of AVX-512 IFMA instead of running them one after the other: about 2.4 times the signatures
//! per second of aws-lc on the same core.
//!
//! Compiled in when the build finds `libcrypto_mb.a` (see `build.rs` and
//! `scripts/fetch-crypto-mb.sh`), used only when the CPU can run it and the key fits
//! (2048 to 4096 bits, two primes, public exponent 65537). Signatures are the same bytes as
//! aws-lc's (RSASSA-PKCS1-v1_5 is deterministic): each is checked with the public key before it
//! is returned, and any lane that fails the check is signed again by aws-lc.

use std::ffi::c_int;

/// `mbx_status`: four status bits per lane, zero when the lane succeeded.
type MbxStatus = u32;

/// `mbx_RSA_Method`, opaque.
#[repr(C)]
struct MbxRsaMethod {
    _opaque: [u8; 0],
}

#[link(name = "crypto_mb", kind = "static")]
unsafe extern "C" {
    fn mbx_get_cpu_features() -> u64;
    fn mbx_is_crypto_mb_applicable(cpu_features: u64) -> c_int;
    fn mbx_RSA_private_crt_Method(bits: c_int) -> *const MbxRsaMethod;
    fn mbx_RSA_pub65537_Method(bits: c_int) -> *const MbxRsaMethod;
    fn mbx_RSA_Method_BufSize(method: *const MbxRsaMethod) -> c_int;
    fn mbx_rsa_private_crt_mb8(
        from: *const *const u8,
        to: *const *mut u8,
        p: *const *const u64,
        q: *const *const u64,
        dp: *const *const u64,
        dq: *const *const u64,
        iq: *const *const u64,
        bits: c_int,
        method: *const MbxRsaMethod,
        buffer: *mut u8,
    ) -> MbxStatus;
    fn mbx_rsa_public_mb8(
        from: *const *const u8,
        to: *const *mut u8,
        n: *const *const u64,
        bits: c_int,
        method: *const MbxRsaMethod,
        buffer: *mut u8,
    ) -> MbxStatus;
}

// The library's variants that take OpenSSL BIGNUMs (never called here) share object files with
// what is, and refer to these two OpenSSL functions. They are defined so that the library
// links without OpenSSL; should they ever be called, they report failure.
#[unsafe(no_mangle)]
extern "C" fn BN_num_bits(_bn: *const std::ffi::c_void) -> c_int {
    0
}

#[unsafe(no_mangle)]
extern "C" fn BN_bn2lebinpad(_bn: *const std::ffi::c_void, _to: *mut u8, _len: c_int) -> c_int {
    -1
}

/// The lanes of one call.
pub const LANES: usize = 8;

/// A private key in the form crypto_mb takes: CRT values as little-endian 64-bit words.
pub struct Key {
    bits: c_int,
    /// Bytes of the modulus.
    len: usize,
    n: Vec<u64>,
    p: Vec<u64>,
    q: Vec<u64>,
    dp: Vec<u64>,
    dq: Vec<u64>,
    iq: Vec<u64>,
    private: *const MbxRsaMethod,
    public: *const MbxRsaMethod,
    buffer_len: usize,
}

// SAFETY: the method pointers point to immutable tables inside the library; the key is only read.
unsafe impl Send for Key {}
// SAFETY: as above; every call gets its own work buffer.
unsafe impl Sync for Key {}

impl Drop for Key {
    fn drop(&mut self) {
        for words in [
            &mut self.p,
            &mut self.q,
            &mut self.dp,
            &mut self.dq,
            &mut self.iq,
        ] {
            words.iter_mut().for_each(|w| unsafe {
                // SAFETY: a valid, aligned, exclusive reference; volatile so that the wipe of
                // secret words is not optimised away.
                std::ptr::write_volatile(w, 0)
            });
        }
    }
}

impl Key {
    /// The key of a PKCS#1 `RSAPrivateKey` or PKCS#8 `PrivateKeyInfo` DER, when this CPU runs
    /// crypto_mb and the key is one it takes; `None` otherwise (aws-lc signs alone).
    pub fn new(der: &[u8]) -> Option<Key> {
        // SAFETY: plain queries of the CPU's features.
        let applicable = unsafe { mbx_is_crypto_mb_applicable(mbx_get_cpu_features()) } != 0;
        if !applicable {
            return None;
        }
        let parts = der::rsa_private_key(der)?;
        let len = parts.n.len();
        let bits = match len * 8 {
            b @ (2048 | 3072 | 4096) if parts.n.first().is_some_and(|b| b & 0x80 != 0) => b,
            _ => return None,
        };
        if parts.e != [1, 0, 1] {
            return None;
        }
        let half = len / 2;
        // Both primes (and so the CRT values) must fit half the modulus.
        if [parts.p, parts.q, parts.dp, parts.dq, parts.iq]
            .iter()
            .any(|x| x.len() > half)
        {
            return None;
        }
        let bits = c_int::try_from(bits).ok()?;
        // SAFETY: the method constructors take any size and return null for unsupported ones.
        let (private, public) = unsafe {
            (
                mbx_RSA_private_crt_Method(bits),
                mbx_RSA_pub65537_Method(bits),
            )
        };
        if private.is_null() || public.is_null() {
            return None;
        }
        // SAFETY: both methods are valid (checked above).
        let sizes = unsafe {
            [
                mbx_RSA_Method_BufSize(private),
                mbx_RSA_Method_BufSize(public),
            ]
        };
        let buffer_len = usize::try_from(sizes[0].max(sizes[1])).ok()?;
        Some(Key {
            bits,
            len,
            n: words(parts.n, len / 8),
            p: words(parts.p, half / 8),
            q: words(parts.q, half / 8),
            dp: words(parts.dp, half / 8),
            dq: words(parts.dq, half / 8),
            iq: words(parts.iq, half / 8),
            private,
            public,
            buffer_len,
        })
    }

    /// Raw RSA private-key operations on eight encoded messages (big-endian, each the length
    /// of the modulus and less than it), each checked by the public-key operation. A lane is
    /// `None` when the library reported an error or its result does not check.
    pub fn sign8(&self, messages: &[Vec<u8>; LANES]) -> [Option<Vec<u8>>; LANES] {
        let mut out: [Option<Vec<u8>>; LANES] = Default::default();
        if messages.iter().any(|m| m.len() != self.len) {
            return out;
        }
        let mut signatures: [Vec<u8>; LANES] = std::array::from_fn(|_| vec![0u8; self.len]);
        let mut checks: [Vec<u8>; LANES] = std::array::from_fn(|_| vec![0u8; self.len]);
        let mut buffer = vec![0u8; self.buffer_len];
        let from: [*const u8; LANES] = std::array::from_fn(|i| messages[i].as_ptr());
        let to: [*mut u8; LANES] = std::array::from_fn(|i| signatures[i].as_mut_ptr());
        let lanes = |words: &Vec<u64>| -> [*const u64; LANES] { [words.as_ptr(); LANES] };
        let (p, q, dp, dq, iq, n) = (
            lanes(&self.p),
            lanes(&self.q),
            lanes(&self.dp),
            lanes(&self.dq),
            lanes(&self.iq),
            lanes(&self.n),
        );
        // SAFETY: every pointer points to a buffer of the size the method expects for
        // `self.bits` (messages and outputs: the modulus length; CRT values: half of it, in
        // 64-bit words), alive for the call; the work buffer has the method's size.
        let signed = unsafe {
            mbx_rsa_private_crt_mb8(
                from.as_ptr(),
                to.as_ptr(),
                p.as_ptr(),
                q.as_ptr(),
                dp.as_ptr(),
                dq.as_ptr(),
                iq.as_ptr(),
                self.bits,
                self.private,
                buffer.as_mut_ptr(),
            )
        };
        let from: [*const u8; LANES] = std::array::from_fn(|i| signatures[i].as_ptr());
        let to: [*mut u8; LANES] = std::array::from_fn(|i| checks[i].as_mut_ptr());
        // SAFETY: as above, with the modulus (the modulus length in 64-bit words).
        let checked = unsafe {
            mbx_rsa_public_mb8(
                from.as_ptr(),
                to.as_ptr(),
                n.as_ptr(),
                self.bits,
                self.public,
                buffer.as_mut_ptr(),
            )
        };
        for (lane, signature) in signatures.into_iter().enumerate() {
            let ok = (signed >> (4 * lane)) & 0xF == 0
                && (checked >> (4 * lane)) & 0xF == 0
                && checks[lane] == messages[lane];
            if ok {
                out[lane] = Some(signature);
            }
        }
        out
    }
}

/// A big-endian integer as `count` little-endian 64-bit words (it has at most `8 * count`
/// bytes, checked by the caller).
fn words(big_endian: &[u8], count: usize) -> Vec<u64> {
    let mut out = vec![0u64; count];
    for (i, byte) in big_endian.iter().rev().enumerate() {
        if let Some(word) = out.get_mut(i / 8) {
            *word |= u64::from(*byte) << (8 * (i % 8));
        }
    }
    out
}

/// Just enough DER to take the integers out of an RSA private key.
mod der {
    /// The integers of a two-prime `RSAPrivateKey`, big-endian, without leading zeros.
    pub struct RsaParts<'a> {
        pub n: &'a [u8],
        pub e: &'a [u8],
        pub p: &'a [u8],
        pub q: &'a [u8],
        pub dp: &'a [u8],
        pub dq: &'a [u8],
        pub iq: &'a [u8],
    }

    /// One TLV: its tag, its content, and what follows it.
    fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, rest) = input.split_first()?;
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let count = usize::from(first & 0x7f);
            if count == 0 || count > 4 || rest.len() < count {
                return None;
            }
            let (bytes, rest) = rest.split_at(count);
            (
                bytes
                    .iter()
                    .fold(0usize, |acc, b| (acc << 8) | usize::from(*b)),
                rest,
            )
        };
        if rest.len() < len {
            return None;
        }
        let (content, rest) = rest.split_at(len);
        Some((tag, content, rest))
    }

    fn integer(input: &[u8]) -> Option<(&[u8], &[u8])> {
        let (tag, content, rest) = tlv(input)?;
        if tag != 0x02 || content.first().is_some_and(|b| b & 0x80 != 0) {
            return None;
        }
        let first = content
            .iter()
            .position(|b| *b != 0)
            .unwrap_or(content.len());
        Some((&content[first..], rest))
    }

    /// A PKCS#1 `RSAPrivateKey`, or one wrapped in a PKCS#8 `PrivateKeyInfo`.
    pub fn rsa_private_key(der: &[u8]) -> Option<RsaParts<'_>> {
        let (tag, body, _) = tlv(der)?;
        if tag != 0x30 {
            return None;
        }
        let (version, rest) = integer(body)?;
        // PKCS#8: version 0, an AlgorithmIdentifier, then the key in an OCTET STRING.
        if let Some((0x30, _, after)) = tlv(rest) {
            let (tag, key, _) = tlv(after)?;
            return if tag == 0x04 && version.is_empty() {
                rsa_private_key(key)
            } else {
                None
            };
        }
        // PKCS#1 version 0: two primes (version 1 has more).
        if !version.is_empty() {
            return None;
        }
        let (n, rest) = integer(rest)?;
        let (e, rest) = integer(rest)?;
        let (_d, rest) = integer(rest)?;
        let (p, rest) = integer(rest)?;
        let (q, rest) = integer(rest)?;
        let (dp, rest) = integer(rest)?;
        let (dq, rest) = integer(rest)?;
        let (iq, _) = integer(rest)?;
        Some(RsaParts {
            n,
            e,
            p,
            q,
            dp,
            dq,
            iq,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_little_endian() {
        assert_eq!(
            words(&[1, 2, 3, 4, 5, 6, 7, 8, 9], 2),
            vec![0x0203040506070809, 1]
        );
        assert_eq!(words(&[], 1), vec![0]);
    }

    #[test]
    fn a_lane_that_fails_is_none_and_the_others_sign() {
        let pem = pem::parse(include_bytes!("../../fixtures/private_key.pem")).unwrap();
        let Some(key) = Key::new(pem.contents()) else {
            eprintln!("crypto_mb does not run on this CPU: nothing to check");
            return;
        };
        let public =
            crate::signing::PrivateKey::from_pem(include_bytes!("../../fixtures/private_key.pem"))
                .unwrap()
                .public_key();
        let payloads: Vec<Vec<u8>> = (0..LANES).map(|i| vec![b'x'; i]).collect();
        let mut messages: [Vec<u8>; LANES] =
            std::array::from_fn(|i| crate::signing::pkcs1_sha512_encoding(&payloads[i], 256));
        // Not less than the modulus: no signature can be made of it.
        messages[3] = vec![0xff; 256];
        let signed = key.sign8(&messages);
        for (lane, signature) in signed.iter().enumerate() {
            match signature {
                None => assert_eq!(lane, 3),
                Some(s) => assert_eq!(public.verify(&payloads[lane], s), Ok(()), "lane {lane}"),
            }
        }
        assert!(signed[3].is_none());
        // A message of the wrong length fails every lane rather than reading past it.
        messages[3] = vec![0; 255];
        assert!(key.sign8(&messages).iter().all(Option::is_none));
    }

    #[test]
    fn der_reader_refuses_what_it_cannot_read() {
        assert!(der::rsa_private_key(&[]).is_none());
        assert!(der::rsa_private_key(&[0x30, 0x05, 0x02, 0x01]).is_none());
        assert!(der::rsa_private_key(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_none());
        assert!(der::rsa_private_key(&[0x30, 0x03, 0x02, 0x01, 0x00]).is_none());
    }
}
