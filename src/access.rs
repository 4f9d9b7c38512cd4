//! Who may read and change what: scopes, bearer tokens kept as SHA-256
//! digests, and the decision for one request. No HTTP here: the route table
//! (`http::routes`) says which scope each route and method needs, and
//! `http::auth` asks [`Tokens::authorize`].
//!
//! Tokens come from `INSIKT_READ_TOKENS`, `INSIKT_WRITE_TOKENS`,
//! `INSIKT_ADMIN_TOKENS` (comma-separated `name:sha256-hex` pairs) and
//! `INSIKT_TOKENS_FILE` (one `scope name:sha256-hex` a line), so no
//! configuration holds a secret; the legacy `INSIKT_ADMIN_TOKEN` (plaintext)
//! still works and is hashed at start. A presented token is hashed and its
//! digest compared with every configured one in constant time; token values
//! are never logged or echoed.

use std::fmt;
use std::path::Path;

use sha2::{Digest as _, Sha256};

/// What a token may do: `admin` implies `write`, which implies `read`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    Read,
    Write,
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Scope::Read, Scope::Write, Scope::Admin];

    pub fn name(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The environment variable holding this scope's `name:digest` pairs.
    pub fn variable(self) -> &'static str {
        match self {
            Scope::Read => "INSIKT_READ_TOKENS",
            Scope::Write => "INSIKT_WRITE_TOKENS",
            Scope::Admin => "INSIKT_ADMIN_TOKENS",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A SHA-256 digest: what is configured and what a presented token is
/// turned into before any comparison, so every comparison is of 32 bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenDigest([u8; 32]);

impl TokenDigest {
    pub fn of(token: &str) -> Self {
        Self(Sha256::digest(token.as_bytes()).into())
    }

    /// 64 hexadecimal digits (either case).
    pub fn parse_hex(text: &str) -> Option<Self> {
        let text = text.as_bytes();
        if text.len() != 64 {
            return None;
        }
        let mut bytes = [0u8; 32];
        for (byte, pair) in bytes.iter_mut().zip(text.chunks_exact(2)) {
            let hex = |c: u8| (c as char).to_digit(16);
            *byte = u8::try_from(hex(pair[0])? * 16 + hex(pair[1])?).ok()?;
        }
        Some(Self(bytes))
    }

    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Equal without an early exit: the time does not depend on where the
    /// digests differ (both are always 32 bytes long).
    fn same(&self, other: &Self) -> bool {
        let diff = self
            .0
            .iter()
            .zip(other.0.iter())
            .fold(0u8, |diff, (a, b)| diff | (a ^ b));
        std::hint::black_box(diff) == 0
    }
}

impl fmt::Debug for TokenDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenDigest({})", self.hex())
    }
}

/// One configured token: its name (shown in the audit trail), scope and digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub name: String,
    pub scope: Scope,
    pub digest: TokenDigest,
}

/// Why the configured tokens cannot be used; the service does not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    #[error("{source_name}: {entry:?} is not `name:sha256-hex` (the name: 1 to 64 of A-Z a-z 0-9 . _ -; the digest: 64 hex digits, see `insikt token new`)")]
    Malformed { source_name: String, entry: String },
    #[error("{source_name}: line {line} is not `read|write|admin name:sha256-hex`")]
    BadLine { source_name: String, line: usize },
    #[error("token name {0:?} is configured twice")]
    DuplicateName(String),
    #[error("two configured tokens have the same digest ({0} and {1})")]
    DuplicateDigest(String, String),
    #[error("cannot read the tokens file {path}: {reason}")]
    File { path: String, reason: String },
}

/// The name the plaintext `INSIKT_ADMIN_TOKEN` goes by in the audit trail.
pub const LEGACY_ADMIN_NAME: &str = "admin";

/// The configured tokens, and whether the service runs open (no read or
/// write token configured: reads and writes need no token, as in 2019).
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    tokens: Vec<Token>,
}

/// Who made a request: the name of the token it carried, if any.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Caller {
    pub token: Option<String>,
}

/// Why a request may not go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// No token where one is needed (HTTP 401).
    Missing(Scope),
    /// A token that is not configured, or lacks the scope (HTTP 403).
    Forbidden(String),
}

impl Tokens {
    /// From the settings' sources; any malformed entry is an error.
    pub fn new(
        legacy_admin: Option<&str>,
        pairs: [(Scope, Option<&str>); 3],
        file: Option<&Path>,
    ) -> Result<Self, AccessError> {
        let mut tokens = Vec::new();
        if let Some(plain) = legacy_admin.filter(|t| !t.is_empty()) {
            tokens.push(Token {
                name: LEGACY_ADMIN_NAME.to_owned(),
                scope: Scope::Admin,
                digest: TokenDigest::of(plain),
            });
        }
        for (scope, list) in pairs {
            for entry in list.unwrap_or("").split(',').map(str::trim) {
                if entry.is_empty() {
                    continue;
                }
                tokens.push(
                    parse_pair(entry, scope).ok_or_else(|| AccessError::Malformed {
                        source_name: scope.variable().to_owned(),
                        entry: crate::limits::excerpt(entry, 80),
                    })?,
                );
            }
        }
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|e| AccessError::File {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
            tokens.extend(parse_file(&text, &path.display().to_string())?);
        }
        for (i, a) in tokens.iter().enumerate() {
            for b in &tokens[..i] {
                if a.name == b.name {
                    return Err(AccessError::DuplicateName(a.name.clone()));
                }
                if a.digest == b.digest {
                    return Err(AccessError::DuplicateDigest(b.name.clone(), a.name.clone()));
                }
            }
        }
        Ok(Self { tokens })
    }

    /// True when no read or write token is configured: reads and writes are
    /// open to anyone who reaches the port (admin routes still need a token).
    pub fn is_open(&self) -> bool {
        !self.tokens.iter().any(|t| t.scope < Scope::Admin)
    }

    /// How many tokens of each scope are configured.
    pub fn count(&self, scope: Scope) -> usize {
        self.tokens.iter().filter(|t| t.scope == scope).count()
    }

    /// The configured token a bearer value is, compared by digest with every
    /// configured token (no early exit: the time tells nothing but how many
    /// tokens are configured).
    pub fn identify(&self, bearer: &str) -> Option<&Token> {
        let presented = TokenDigest::of(bearer);
        let mut found = None;
        for token in &self.tokens {
            if token.digest.same(&presented) {
                found = Some(token);
            }
        }
        found
    }

    /// May a request with this `Authorization` header value call a route
    /// that needs `need`?
    pub fn authorize(&self, need: Scope, authorization: Option<&str>) -> Result<Caller, Denied> {
        let bearer = authorization.map(bearer_value);
        let open = need < Scope::Admin && self.is_open();
        let token = match bearer {
            None if open => return Ok(Caller::default()),
            None => return Err(Denied::Missing(need)),
            Some(None) if open => return Ok(Caller::default()),
            Some(None) => {
                return Err(Denied::Forbidden(
                    "the Authorization header is not `Bearer <token>`".to_owned(),
                ))
            }
            Some(Some(value)) => self.identify(value),
        };
        match token {
            Some(token) if token.scope >= need => Ok(Caller {
                token: Some(token.name.clone()),
            }),
            Some(token) if open => {
                // Open mode: a valid token below the scope still names the caller.
                Ok(Caller {
                    token: Some(token.name.clone()),
                })
            }
            Some(token) => Err(Denied::Forbidden(format!(
                "token {} has the {} scope; this route needs {need}",
                token.name, token.scope
            ))),
            // Open mode ignores what it cannot recognise, as it always did.
            None if open => Ok(Caller::default()),
            None if need == Scope::Admin && self.count(Scope::Admin) == 0 => Err(
                Denied::Forbidden("admin routes are disabled: no admin token is configured".into()),
            ),
            None => Err(Denied::Forbidden("unknown token".to_owned())),
        }
    }

    /// The caller a request names with its token, whatever the route needs
    /// (for the audit trail of a request the route check already let through).
    pub fn caller(&self, authorization: Option<&str>) -> Caller {
        let token = authorization
            .and_then(bearer_value)
            .and_then(|value| self.identify(value));
        Caller {
            token: token.map(|t| t.name.clone()),
        }
    }
}

/// The token of `Bearer <token>` (scheme case-insensitive), if that is the form.
fn bearer_value(authorization: &str) -> Option<&str> {
    authorization
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|token| !token.is_empty())
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn parse_pair(entry: &str, scope: Scope) -> Option<Token> {
    let (name, hex) = entry.split_once(':')?;
    let name = name.trim();
    if !valid_name(name) {
        return None;
    }
    Some(Token {
        name: name.to_owned(),
        scope,
        digest: TokenDigest::parse_hex(hex.trim())?,
    })
}

/// `scope name:sha256-hex` lines; blank lines and `#` comments are skipped.
fn parse_file(text: &str, source_name: &str) -> Result<Vec<Token>, AccessError> {
    let mut tokens = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = || AccessError::BadLine {
            source_name: source_name.to_owned(),
            line: index + 1,
        };
        let (scope, pair) = line.split_once(char::is_whitespace).ok_or_else(bad)?;
        let scope = Scope::parse(scope.trim()).ok_or_else(bad)?;
        tokens.push(parse_pair(pair.trim(), scope).ok_or_else(bad)?);
    }
    Ok(tokens)
}

/// A fresh token (32 random bytes, URL-safe base64, prefixed so secret
/// scanners recognise it) and its digest.
pub fn new_token() -> Result<(String, TokenDigest), getrandom::Error> {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    let token = format!(
        "insikt_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let digest = TokenDigest::of(&token);
    Ok((token, digest))
}

/// Checks a name for `insikt token new` (the same rule as configuration).
pub fn check_name(name: &str) -> Result<(), String> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(format!(
            "{:?} is not a token name: 1 to 64 of A-Z a-z 0-9 . _ -",
            crate::limits::excerpt(name, 80)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(token: &str) -> String {
        TokenDigest::of(token).hex()
    }

    fn tokens(read: &str, write: &str, admin: &str) -> Tokens {
        let opt = |s: &str| (!s.is_empty()).then_some(s.to_owned());
        let (r, w, a) = (opt(read), opt(write), opt(admin));
        Tokens::new(
            None,
            [
                (Scope::Read, r.as_deref()),
                (Scope::Write, w.as_deref()),
                (Scope::Admin, a.as_deref()),
            ],
            None,
        )
        .unwrap()
    }

    fn closed() -> Tokens {
        tokens(
            &format!("analyst:{}", hex("r")),
            &format!("loader:{}", hex("w")),
            &format!("ops:{}", hex("a")),
        )
    }

    #[test]
    fn digests_are_sha256_in_hex() {
        // printf 'abc' | sha256sum
        assert_eq!(
            hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let upper = hex("abc").to_uppercase();
        assert_eq!(TokenDigest::parse_hex(&upper), Some(TokenDigest::of("abc")));
        for bad in ["", "ab", &"g".repeat(64), &"a".repeat(63), &"a".repeat(65)] {
            assert_eq!(TokenDigest::parse_hex(bad), None, "{bad}");
        }
    }

    #[test]
    fn scopes_nest() {
        let t = closed();
        assert!(!t.is_open());
        let name = |need, token: &str| {
            t.authorize(need, Some(&format!("Bearer {token}")))
                .map(|c| c.token.unwrap())
        };
        assert_eq!(name(Scope::Read, "r").as_deref(), Ok("analyst"));
        assert_eq!(name(Scope::Read, "a").as_deref(), Ok("ops"));
        assert_eq!(name(Scope::Write, "w").as_deref(), Ok("loader"));
        assert!(matches!(name(Scope::Write, "r"), Err(Denied::Forbidden(_))));
        assert!(matches!(name(Scope::Admin, "w"), Err(Denied::Forbidden(_))));
        assert_eq!(name(Scope::Admin, "a").as_deref(), Ok("ops"));
        assert!(matches!(name(Scope::Read, "x"), Err(Denied::Forbidden(_))));
        assert_eq!(
            t.authorize(Scope::Read, None),
            Err(Denied::Missing(Scope::Read))
        );
        assert!(matches!(
            t.authorize(Scope::Read, Some("Basic r")),
            Err(Denied::Forbidden(_))
        ));
        assert_eq!(
            t.authorize(Scope::Read, Some("bearer   r")).unwrap().token,
            Some("analyst".into())
        );
    }

    #[test]
    fn without_read_or_write_tokens_reads_and_writes_are_open() {
        let t = tokens("", "", &format!("ops:{}", hex("a")));
        assert!(t.is_open());
        assert_eq!(t.authorize(Scope::Write, None), Ok(Caller::default()));
        assert_eq!(
            t.authorize(Scope::Read, Some("Bearer wrong")),
            Ok(Caller::default())
        );
        assert_eq!(
            t.authorize(Scope::Write, Some("Bearer a")).unwrap().token,
            Some("ops".into())
        );
        assert_eq!(
            t.authorize(Scope::Admin, None),
            Err(Denied::Missing(Scope::Admin))
        );
        assert!(matches!(
            t.authorize(Scope::Admin, Some("Bearer wrong")),
            Err(Denied::Forbidden(_))
        ));
        // Nothing configured at all: admin routes are closed to everyone.
        let none = Tokens::default();
        assert!(matches!(
            none.authorize(Scope::Admin, Some("Bearer x")),
            Err(Denied::Forbidden(m)) if m.contains("disabled")
        ));
    }

    #[test]
    fn the_plaintext_admin_token_still_works() {
        let t = Tokens::new(
            Some("s3cret"),
            [
                (Scope::Read, None),
                (Scope::Write, None),
                (Scope::Admin, None),
            ],
            None,
        )
        .unwrap();
        assert_eq!(
            t.authorize(Scope::Admin, Some("Bearer s3cret"))
                .unwrap()
                .token,
            Some(LEGACY_ADMIN_NAME.into())
        );
        for wrong in [
            "Bearer s3cre",
            "Bearer s3cret2",
            "Basic s3cret",
            "s3cret",
            "Bearer ",
        ] {
            assert!(
                matches!(
                    t.authorize(Scope::Admin, Some(wrong)),
                    Err(Denied::Forbidden(_))
                ),
                "{wrong}"
            );
        }
    }

    #[test]
    fn malformed_configuration_is_refused_without_echoing_much() {
        for bad in [
            "noseparator",
            ":abc",
            &format!("bad name:{}", hex("x")),
            "x:zz",
        ] {
            let error = Tokens::new(
                None,
                [
                    (Scope::Read, Some(bad)),
                    (Scope::Write, None),
                    (Scope::Admin, None),
                ],
                None,
            )
            .unwrap_err();
            assert!(matches!(error, AccessError::Malformed { .. }), "{bad}");
        }
        let long = format!("x:{}", "a".repeat(10_000));
        let error = Tokens::new(
            None,
            [
                (Scope::Read, Some(&long)),
                (Scope::Write, None),
                (Scope::Admin, None),
            ],
            None,
        )
        .unwrap_err();
        assert!(error.to_string().len() < 400, "{error}");
        let twice = format!("a:{},a:{}", hex("1"), hex("2"));
        assert_eq!(
            Tokens::new(
                None,
                [
                    (Scope::Read, Some(&twice)),
                    (Scope::Write, None),
                    (Scope::Admin, None)
                ],
                None
            )
            .unwrap_err(),
            AccessError::DuplicateName("a".into())
        );
        let same = format!("a:{},b:{}", hex("1"), hex("1"));
        assert!(matches!(
            Tokens::new(
                None,
                [
                    (Scope::Read, Some(&same)),
                    (Scope::Write, None),
                    (Scope::Admin, None)
                ],
                None
            )
            .unwrap_err(),
            AccessError::DuplicateDigest(..)
        ));
    }

    #[test]
    fn the_file_holds_scope_and_pair_per_line() {
        let text = format!(
            "# tokens\n\nread analyst:{}\nwrite loader:{}\n  admin ops:{}  \n",
            hex("r"),
            hex("w"),
            hex("a")
        );
        let parsed = parse_file(&text, "f").unwrap();
        assert_eq!(parsed.len(), 3);
        assert_eq!(
            (parsed[2].name.as_str(), parsed[2].scope),
            ("ops", Scope::Admin)
        );
        assert_eq!(
            parse_file("owner x:y\n", "f").unwrap_err(),
            AccessError::BadLine {
                source_name: "f".into(),
                line: 1
            }
        );
    }

    #[test]
    fn new_tokens_are_random_and_match_their_digest() {
        let (a, digest) = new_token().unwrap();
        let (b, _) = new_token().unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with("insikt_") && a.len() == 7 + 43, "{a}");
        assert_eq!(TokenDigest::of(&a), digest);
        let configured = format!("cli:{}", digest.hex());
        let t = Tokens::new(
            None,
            [
                (Scope::Read, None),
                (Scope::Write, Some(&configured)),
                (Scope::Admin, None),
            ],
            None,
        )
        .unwrap();
        assert_eq!(t.identify(&a).map(|t| t.name.as_str()), Some("cli"));
        assert!(check_name("cli-1.x_y").is_ok());
        assert!(check_name("with space").is_err());
    }
}
