//! RSA keys and registry signatures: RSASSA-PKCS1-v1_5 over SHA-512, as hex_core signs and
//! verifies registry payloads.
//!
//! Private keys are read from PEM text (PKCS#1 `RSA PRIVATE KEY` or unencrypted PKCS#8
//! `PRIVATE KEY`); public keys from PKCS#1 `RSA PUBLIC KEY` or SPKI `PUBLIC KEY`. The public key
//! file the task writes is PKCS#1 PEM with a trailing blank line ([`PrivateKey::public_key_pem`]).

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, KeyPair, RsaKeyPair, UnparsedPublicKey};

/// Why a key could not be used. Each text says what to do about it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    /// The text holds no PEM block at all.
    #[error("holds no PEM block (no `-----BEGIN ...-----` line); a key file is PEM text")]
    NoPem,
    #[error("is not valid PEM: {0}")]
    /// The PEM text does not parse; holds the `pem` crate's error text.
    BadPem(String),
    /// A private key file holds more than one PEM block; holds how many.
    #[error(
        "holds {0} PEM blocks, expected exactly one key: keep only the private key block in the file"
    )]
    ManyBlocks(usize),
    /// The key is password-protected (PKCS#8 `ENCRYPTED PRIVATE KEY` or a legacy
    /// `Proc-Type: 4,ENCRYPTED` header), which is not read.
    #[error(
        "is encrypted: decrypt it first, e.g. `openssl pkey -in KEY -out plain.pem`, and keep the result out of the public directory"
    )]
    Encrypted,
    /// The key is not RSA; holds the kind found (e.g. `EC`, `Ed25519`, `OpenSSH-format`).
    #[error(
        "is a {0} key, but Hex registries are signed with RSA: create one with `hexreg keygen --out key.pem` or `openssl genrsa -out key.pem 2048`"
    )]
    NotRsa(String),
    #[error("holds a `{0}` block, expected `PRIVATE KEY` or `RSA PRIVATE KEY`")]
    /// A private key was expected but the PEM block is of another kind; holds its tag.
    UnexpectedBlock(String),
    #[error("holds a `{0}` block, expected `PUBLIC KEY` or `RSA PUBLIC KEY`")]
    /// A public key was expected but the PEM block is of another kind; holds its tag.
    UnexpectedPublicBlock(String),
    /// aws-lc refused the key, or `generate_pem` was asked for an unsupported size; holds the
    /// reason.
    #[error("is not a usable RSA key ({0}); RSA keys of 2048 to 8192 bits are supported")]
    Rejected(String),
}

/// A signature aws-lc could not make: the payload is not signed, and nothing should be
/// published in its place. Holds aws-lc's error text.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "RSA signing failed in aws-lc ({0}), so the payload was not signed: check the private key, or make a new one with `hexreg keygen --out key.pem`"
)]
pub struct SignError(String);

/// A signature check that failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("signature does not verify with the public key")]
pub struct BadSignature;

/// An RSA private key that signs registry payloads.
pub struct PrivateKey {
    pair: RsaKeyPair,
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PrivateKey({} bits)", self.bits())
    }
}

/// The DER of the rsaEncryption algorithm OID (1.2.840.113549.1.1.1), as it appears in a PKCS#8
/// `PrivateKeyInfo` or an SPKI of an RSA key.
const RSA_ENCRYPTION_OID: [u8; 11] = [
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
];

/// Names the kind of key of a PKCS#8 / SPKI structure from its algorithm OID, for error texts.
fn algorithm_name(der: &[u8]) -> Option<&'static str> {
    const OIDS: [(&[u8], &str); 5] = [
        (&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01], "EC"),
        (&[0x2b, 0x65, 0x70], "Ed25519"),
        (&[0x2b, 0x65, 0x71], "Ed448"),
        (&[0x2a, 0x86, 0x48, 0xce, 0x38, 0x04, 0x01], "DSA"),
        (
            &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a],
            "RSA-PSS",
        ),
    ];
    let head = &der[..der.len().min(64)];
    OIDS.iter()
        .find(|(oid, _)| head.windows(oid.len()).any(|w| w == *oid))
        .map(|(_, name)| *name)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Parses the PEM blocks of a key file, insisting on exactly one.
fn single_block(text: &[u8]) -> Result<pem::Pem, KeyError> {
    let text_str = String::from_utf8_lossy(text);
    if text_str.contains("ENCRYPTED") {
        return Err(KeyError::Encrypted);
    }
    let blocks = pem::parse_many(text).map_err(|e| KeyError::BadPem(e.to_string()))?;
    match blocks.len() {
        0 => Err(KeyError::NoPem),
        1 => Ok(blocks.into_iter().next().ok_or(KeyError::NoPem)?),
        n => Err(KeyError::ManyBlocks(n)),
    }
}

impl PrivateKey {
    /// Reads a PEM private key: PKCS#1 (`RSA PRIVATE KEY`) or unencrypted PKCS#8 (`PRIVATE KEY`).
    pub fn from_pem(text: &[u8]) -> Result<Self, KeyError> {
        let block = single_block(text)?;
        let der = block.contents();
        let pair = match block.tag() {
            "RSA PRIVATE KEY" => RsaKeyPair::from_der(der),
            "PRIVATE KEY" => {
                if !contains(&der[..der.len().min(64)], &RSA_ENCRYPTION_OID) {
                    let kind = algorithm_name(der).unwrap_or("non-RSA");
                    return Err(KeyError::NotRsa(kind.to_string()));
                }
                RsaKeyPair::from_pkcs8(der)
            }
            "EC PRIVATE KEY" => return Err(KeyError::NotRsa("EC".into())),
            "DSA PRIVATE KEY" => return Err(KeyError::NotRsa("DSA".into())),
            "OPENSSH PRIVATE KEY" => return Err(KeyError::NotRsa("OpenSSH-format".into())),
            other => return Err(KeyError::UnexpectedBlock(other.to_string())),
        }
        .map_err(|e| KeyError::Rejected(e.to_string()))?;
        Ok(PrivateKey { pair })
    }

    /// Reads a PKCS#8 DER private key: the contents of a `PRIVATE KEY` PEM block, such as the
    /// one [`PrivateKey::generate_pem`] writes.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, KeyError> {
        let pair = RsaKeyPair::from_pkcs8(der).map_err(|e| KeyError::Rejected(e.to_string()))?;
        Ok(PrivateKey { pair })
    }

    /// Creates a new RSA key of `bits` (2048, 3072 or 4096) and returns it as PKCS#8 PEM text.
    pub fn generate_pem(bits: u32) -> Result<String, KeyError> {
        let size = match bits {
            2048 => aws_lc_rs::rsa::KeySize::Rsa2048,
            3072 => aws_lc_rs::rsa::KeySize::Rsa3072,
            4096 => aws_lc_rs::rsa::KeySize::Rsa4096,
            other => return Err(KeyError::Rejected(format!("{other} bits"))),
        };
        let pair = RsaKeyPair::generate(size).map_err(|e| KeyError::Rejected(e.to_string()))?;
        let der = pair
            .as_der()
            .map_err(|e| KeyError::Rejected(e.to_string()))?;
        Ok(pem_text("PRIVATE KEY", der.as_ref()))
    }

    /// Size of the modulus in bits.
    pub fn bits(&self) -> usize {
        self.pair.public_modulus_len() * 8
    }

    /// Signs `payload`: RSASSA-PKCS1-v1_5 with SHA-512, as `public_key:sign(Payload, sha512, Key)`.
    /// Fails only if aws-lc reports an error, which a validated key signing into a buffer of
    /// the modulus length is not expected to meet.
    pub fn sign(&self, payload: &[u8]) -> Result<Vec<u8>, SignError> {
        let mut signature = vec![0; self.pair.public_modulus_len()];
        self.pair
            .sign(
                &signature::RSA_PKCS1_SHA512,
                &SystemRandom::new(),
                payload,
                &mut signature,
            )
            .map_err(|e| SignError(e.to_string()))?;
        Ok(signature)
    }

    /// The public half.
    pub fn public_key(&self) -> PublicKey {
        PublicKey {
            pkcs1_der: self.pair.public_key().as_ref().to_vec(),
        }
    }

    /// The `public_key` file as the task writes it: PKCS#1 PEM plus a trailing blank line.
    pub fn public_key_pem(&self) -> String {
        self.public_key().to_pem(PublicKeyFormat::Pkcs1)
    }
}

/// How a public key is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PublicKeyFormat {
    /// `-----BEGIN RSA PUBLIC KEY-----`, what the task writes (mix and rebar3 read it).
    #[default]
    Pkcs1,
    /// `-----BEGIN PUBLIC KEY-----` (SubjectPublicKeyInfo), what gleam's hexpm crate needs.
    Spki,
}

/// An RSA public key that verifies registry signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    pkcs1_der: Vec<u8>,
}

impl PublicKey {
    /// Reads a PEM public key, PKCS#1 (`RSA PUBLIC KEY`) or SPKI (`PUBLIC KEY`). Like hex_core,
    /// only the first PEM block counts.
    pub fn from_pem(text: &[u8]) -> Result<Self, KeyError> {
        let blocks = pem::parse_many(text).map_err(|e| KeyError::BadPem(e.to_string()))?;
        let block = blocks.into_iter().next().ok_or(KeyError::NoPem)?;
        let der = block.contents();
        match block.tag() {
            "RSA PUBLIC KEY" | "PUBLIC KEY" => {
                if block.tag() == "PUBLIC KEY"
                    && !contains(&der[..der.len().min(32)], &RSA_ENCRYPTION_OID)
                {
                    let kind = algorithm_name(der).unwrap_or("non-RSA");
                    return Err(KeyError::NotRsa(kind.to_string()));
                }
                let parsed = aws_lc_rs::rsa::PublicKey::from_der(der)
                    .map_err(|e| KeyError::Rejected(e.to_string()))?;
                Ok(PublicKey {
                    pkcs1_der: parsed.as_ref().to_vec(),
                })
            }
            other => Err(KeyError::UnexpectedPublicBlock(other.to_string())),
        }
    }

    /// SHA-256 of the key's PKCS#1 DER: identifies the key whatever its PEM form.
    pub fn fingerprint(&self) -> [u8; 32] {
        use sha2::Digest as _;
        sha2::Sha256::digest(&self.pkcs1_der).into()
    }

    /// Checks an RSASSA-PKCS1-v1_5 / SHA-512 signature of `payload`.
    pub fn verify(&self, payload: &[u8], signature: &[u8]) -> Result<(), BadSignature> {
        UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA512, &self.pkcs1_der)
            .verify(payload, signature)
            .map_err(|_| BadSignature)
    }

    /// PEM text of the key: PKCS#1 exactly as the task writes `public_key` (64-column base64,
    /// `\n` line ends, a blank line after the END line), or SPKI in the same layout.
    pub fn to_pem(&self, format: PublicKeyFormat) -> String {
        match format {
            PublicKeyFormat::Pkcs1 => pem_text("RSA PUBLIC KEY", &self.pkcs1_der) + "\n",
            PublicKeyFormat::Spki => {
                let spki = spki_from_pkcs1(&self.pkcs1_der);
                pem_text("PUBLIC KEY", &spki) + "\n"
            }
        }
    }
}

/// PEM as OTP's `pubkey_pem:encode/1` writes it, without the trailing blank line.
fn pem_text(tag: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {tag}-----\n");
    for line in b64.as_bytes().chunks(64) {
        // base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {tag}-----\n"));
    out
}

/// Wraps a PKCS#1 `RSAPublicKey` DER in a SubjectPublicKeyInfo with the rsaEncryption algorithm.
fn spki_from_pkcs1(pkcs1: &[u8]) -> Vec<u8> {
    // AlgorithmIdentifier { rsaEncryption, NULL }
    let mut alg = RSA_ENCRYPTION_OID.to_vec();
    alg.extend_from_slice(&[0x05, 0x00]);
    let alg = der_tlv(0x30, &alg);
    // BIT STRING with 0 unused bits
    let mut bits = vec![0x00];
    bits.extend_from_slice(pkcs1);
    let bits = der_tlv(0x03, &bits);
    der_tlv(0x30, &[alg, bits].concat())
}

fn der_tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = include_bytes!("../../fixtures/private_key.pem");
    const OTHER_KEY: &[u8] = include_bytes!("../../fixtures/other_private_key.pem");
    const PUBLIC: &str = include_str!("../../fixtures/full/expected/public_key");

    #[test]
    fn public_key_file_matches_the_tasks_bytes() {
        let key = PrivateKey::from_pem(KEY).unwrap();
        assert_eq!(key.bits(), 2048);
        assert_eq!(key.public_key_pem(), PUBLIC);
        assert!(PUBLIC.ends_with("-----\n\n"));
    }

    #[test]
    fn signs_deterministically_and_verifies() {
        let key = PrivateKey::from_pem(KEY).unwrap();
        let a = key.sign(b"payload").unwrap();
        assert_eq!(a.len(), 256);
        assert_eq!(a, key.sign(b"payload").unwrap());
        let public = PublicKey::from_pem(PUBLIC.as_bytes()).unwrap();
        assert_eq!(public.verify(b"payload", &a), Ok(()));
        assert_eq!(public.verify(b"payload!", &a), Err(BadSignature));
        let other = PrivateKey::from_pem(OTHER_KEY).unwrap().public_key();
        assert_eq!(other.verify(b"payload", &a), Err(BadSignature));
    }

    #[test]
    fn sign_error_says_what_failed_and_what_to_do() {
        let text = SignError("Unspecified".into()).to_string();
        assert!(
            text.starts_with("RSA signing failed in aws-lc (Unspecified)"),
            "{text}"
        );
        assert!(text.contains("hexreg keygen"), "{text}");
    }

    #[test]
    fn spki_and_pkcs1_public_keys_read_back_the_same() {
        let key = PrivateKey::from_pem(KEY).unwrap().public_key();
        let spki = key.to_pem(PublicKeyFormat::Spki);
        assert!(spki.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        assert_eq!(PublicKey::from_pem(spki.as_bytes()).unwrap(), key);
    }

    #[test]
    fn pkcs1_private_key_is_accepted() {
        let key = PrivateKey::from_pem(KEY).unwrap();
        let pkcs1 = pem_text("RSA PRIVATE KEY", &pkcs1_private_der(&key));
        let again = PrivateKey::from_pem(pkcs1.as_bytes()).unwrap();
        assert_eq!(again.public_key(), key.public_key());
        assert_eq!(again.sign(b"x").unwrap(), key.sign(b"x").unwrap());
    }

    /// Pulls the PKCS#1 `RSAPrivateKey` out of the fixture's PKCS#8 wrapper: the OCTET STRING
    /// that follows the algorithm identifier.
    fn pkcs1_private_der(_key: &PrivateKey) -> Vec<u8> {
        let block = pem::parse(KEY).unwrap();
        let der = block.contents();
        let at = der
            .windows(RSA_ENCRYPTION_OID.len())
            .position(|w| w == RSA_ENCRYPTION_OID)
            .unwrap()
            + RSA_ENCRYPTION_OID.len()
            + 2; // NULL
        assert_eq!(der[at], 0x04);
        let (len, hdr) = match der[at + 1] {
            0x82 => (((der[at + 2] as usize) << 8) | der[at + 3] as usize, 4),
            0x81 => (der[at + 2] as usize, 3),
            n => (n as usize, 2),
        };
        der[at + hdr..at + hdr + len].to_vec()
    }

    #[test]
    fn refuses_encrypted_multi_block_and_foreign_keys() {
        let enc =
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n";
        assert_eq!(PrivateKey::from_pem(enc).unwrap_err(), KeyError::Encrypted);
        let legacy = b"-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nMIIB\n-----END RSA PRIVATE KEY-----\n";
        assert_eq!(
            PrivateKey::from_pem(legacy).unwrap_err(),
            KeyError::Encrypted
        );
        let two = [KEY, OTHER_KEY].concat();
        assert_eq!(
            PrivateKey::from_pem(&two).unwrap_err(),
            KeyError::ManyBlocks(2)
        );
        assert_eq!(PrivateKey::from_pem(b"hello").unwrap_err(), KeyError::NoPem);
        // An Ed25519 PKCS#8 key, as `openssl genpkey -algorithm ed25519` writes it.
        let ed = b"-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIGZ3/1mPuUVmHhZbJ9cGBGy9mTmxBaZLRXiEr7D87tNU\n-----END PRIVATE KEY-----\n";
        assert_eq!(
            PrivateKey::from_pem(ed).unwrap_err(),
            KeyError::NotRsa("Ed25519".into())
        );
        let public = PUBLIC.as_bytes();
        assert!(matches!(
            PrivateKey::from_pem(public).unwrap_err(),
            KeyError::UnexpectedBlock(_)
        ));
    }

    #[test]
    fn generated_keys_sign() {
        let pem = PrivateKey::generate_pem(2048).unwrap();
        let key = PrivateKey::from_pem(pem.as_bytes()).unwrap();
        let sig = key.sign(b"abc").unwrap();
        assert_eq!(key.public_key().verify(b"abc", &sig), Ok(()));
    }
}
