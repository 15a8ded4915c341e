//! Who may call: bearer tokens from a file that holds, per client, a name, a
//! role and the SHA-256 of its token, never the token itself.
//!
//! ```text
//! # name        role    SHA-256 of the token (hex)
//! erp-sap       writer  5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8
//! planning-ui   reader  a665a45920422f9d417e4867efdc4fb8a04a1f3fff1fa07e998e86f7f7a27ae3
//! ```
//!
//! `lodestone token NAME --role ROLE` makes a token and prints its line.
//! A presented token is hashed and compared with every entry in constant
//! time, so neither a match nor its position shows in the timing.

use std::collections::HashSet;
use std::fmt;
use std::path::Path;

use anyhow::{bail, Context};
use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::domain::audit::{Attribution, Author, Request};

/// What a client may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// Every read, both risk questions, and the licence stream.
    Reader,
    /// A reader that may also write.
    Writer,
    /// A writer that may also administer: the audit trail, retention.
    Admin,
}

impl Role {
    pub fn may_write(self) -> bool {
        matches!(self, Role::Writer | Role::Admin)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Reader => "reader",
            Role::Writer => "writer",
            Role::Admin => "admin",
        })
    }
}

/// An authenticated caller; the gate puts it into each request's extensions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Client {
    /// The token file's name for it, or the provider token's subject.
    pub name: String,
    pub role: Role,
    /// A provider token's subject (`sub`) and client (`client_id`, `azp`).
    pub subject: Option<String>,
    pub client_id: Option<String>,
    /// The plants a provider token is limited to; `None`: every plant.
    pub plants: Option<Vec<String>>,
}

impl Client {
    /// A caller of the token file.
    pub fn named(name: &str, role: Role) -> Client {
        Client {
            name: name.to_string(),
            role,
            subject: None,
            client_id: None,
            plants: None,
        }
    }
}

/// Why a plant-limited caller's question is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlantRefusal {
    /// The question is about, or reaches, a plant the caller may not see.
    Other(String),
    /// The question names no plant, and the caller has several.
    Unnamed,
    /// The call answers about every plant at once (an export).
    Everything,
}

impl Client {
    /// The plants this caller is limited to, if any.
    pub fn limited_to(&self) -> Option<&[String]> {
        self.plants.as_deref()
    }

    /// Whether the caller may see lines of `plant`.
    pub fn sees(&self, plant: &str) -> bool {
        self.plants
            .as_ref()
            .is_none_or(|plants| plants.iter().any(|p| p == plant))
    }

    /// The plant a question about `asked` (empty: every plant) is answered
    /// for: as asked when the caller may see it; the caller's one plant when
    /// it asks about every plant.
    pub fn plant_asked(&self, asked: &str) -> Result<String, PlantRefusal> {
        match self.plants.as_deref() {
            None => Ok(asked.to_string()),
            Some([only]) if asked.is_empty() => Ok(only.clone()),
            Some(_) if asked.is_empty() => Err(PlantRefusal::Unnamed),
            Some(_) if self.sees(asked) => Ok(asked.to_string()),
            Some(_) => Err(PlantRefusal::Other(asked.to_string())),
        }
    }
}

/// The caller of `request`, when the server authenticates.
pub fn caller<T>(request: &tonic::Request<T>) -> Option<Client> {
    request.extensions().get::<Client>().cloned()
}

/// Who asks for the write `request` makes (nobody, without
/// authentication), for the licence log and the audit trail.
pub fn attribution<T>(request: &tonic::Request<T>, kind: Request) -> Attribution {
    let author = request
        .extensions()
        .get::<Client>()
        .map_or_else(Author::default, |c| Author {
            name: c.name.clone(),
            subject: c.subject.clone().unwrap_or_default(),
            client_id: c.client_id.clone().unwrap_or_default(),
        });
    Attribution {
        author,
        request: kind,
    }
}

struct Entry {
    client: Client,
    hash: [u8; 32],
}

/// The clients of a token file.
pub struct Tokens {
    entries: Vec<Entry>,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Names only: even hashes of tokens stay out of logs.
        f.debug_list()
            .entries(self.entries.iter().map(|e| &e.client.name))
            .finish()
    }
}

/// SHA-256 of a token.
pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A SHA-256 from its 64 hex digits, and nothing else: no sign, no spaces.
fn unhex(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

/// A new random token (256 bits, base64url) and its token-file line.
/// What every token `new_token` makes starts with.
pub const TOKEN_PREFIX: &str = "lst_";

pub fn new_token(name: &str, role: Role) -> anyhow::Result<(String, String)> {
    if !valid_name(name) {
        bail!("{name:?} is not a client name: use 1 to 64 letters, digits, '.', '_' or '-'");
    }
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    // A prefix of its own: a token never starts with '-' (which a command
    // line would take for a flag), and secret scanners can tell it.
    let token = format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
    );
    let line = format!("{name} {role} {}", hex::encode(hash_token(&token)));
    Ok((token, line))
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

impl Tokens {
    /// Reads a token file, refusing it whole if any line is wrong.
    pub fn load(path: &Path) -> anyhow::Result<Tokens> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the token file {}", path.display()))?;
        Tokens::parse(&text).with_context(|| format!("in the token file {}", path.display()))
    }

    pub fn parse(text: &str) -> anyhow::Result<Tokens> {
        let mut entries = Vec::new();
        let mut names = HashSet::new();
        let mut problems = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = i + 1;
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [name, role, hash] = fields.as_slice() else {
                problems.push(format!("line {at}: expected `name role sha256-hex`"));
                continue;
            };
            let role = match *role {
                "reader" => Role::Reader,
                "writer" => Role::Writer,
                "admin" => Role::Admin,
                other => {
                    problems.push(format!(
                        "line {at}: role {other:?} is not reader, writer or admin"
                    ));
                    continue;
                }
            };
            if !valid_name(name) {
                problems.push(format!("line {at}: {name:?} is not a client name"));
                continue;
            }
            let Some(hash) = unhex(&hash.to_ascii_lowercase()) else {
                problems.push(format!(
                    "line {at}: the hash must be 64 hex digits (the SHA-256 of the token)"
                ));
                continue;
            };
            if !names.insert(name.to_string()) {
                problems.push(format!("line {at}: client {name:?} appears twice"));
                continue;
            }
            entries.push(Entry {
                client: Client::named(name, role),
                hash,
            });
        }
        if !problems.is_empty() {
            bail!("{}", problems.join("; "));
        }
        if entries.is_empty() {
            bail!("it names no client");
        }
        Ok(Tokens { entries })
    }

    /// The client whose token this is. Every entry is compared, each in
    /// constant time.
    pub fn authenticate(&self, token: &str) -> Option<&Client> {
        let presented = hash_token(token);
        let mut found = None;
        for entry in &self.entries {
            if bool::from(entry.hash.ct_eq(&presented)) {
                found = Some(&entry.client);
            }
        }
        found
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One base64 character in 32 is '-': a bare token would start with
    /// it about once in 64 tokens, and `--token <it>` would then fail.
    #[test]
    fn a_plant_limited_caller_is_answered_for_its_plants_only() {
        let mut one = Client::named("p", Role::Reader);
        assert_eq!(one.plant_asked(""), Ok(String::new()), "unlimited");
        one.plants = Some(vec!["ZWICKAU".into()]);
        assert_eq!(one.plant_asked(""), Ok("ZWICKAU".into()));
        assert_eq!(one.plant_asked("ZWICKAU"), Ok("ZWICKAU".into()));
        assert_eq!(
            one.plant_asked("WOLFSBURG"),
            Err(PlantRefusal::Other("WOLFSBURG".into()))
        );
        let mut two = one.clone();
        two.plants = Some(vec!["ZWICKAU".into(), "EMDEN".into()]);
        assert_eq!(two.plant_asked(""), Err(PlantRefusal::Unnamed));
        assert_eq!(two.plant_asked("EMDEN"), Ok("EMDEN".into()));
        assert!(two.sees("EMDEN") && !two.sees("WOLFSBURG"));
    }

    #[test]
    fn tokens_never_start_like_a_flag() {
        for _ in 0..500 {
            let (token, _) = new_token("c", Role::Reader).unwrap();
            assert!(token.starts_with(TOKEN_PREFIX), "{token}");
            assert_eq!(token.len(), TOKEN_PREFIX.len() + 43);
        }
    }

    #[test]
    fn a_token_file_names_its_clients_and_their_tokens_authenticate() {
        let (writer, writer_line) = new_token("erp-sap", Role::Writer).unwrap();
        let (reader, reader_line) = new_token("planning.ui", Role::Reader).unwrap();
        assert_ne!(writer, reader);
        let text = format!("# the clients\n\n{writer_line}\n  {reader_line}  \n");
        let tokens = Tokens::parse(&text).unwrap();
        assert_eq!(tokens.len(), 2);
        assert_eq!(
            tokens.authenticate(&writer),
            Some(&Client::named("erp-sap", Role::Writer))
        );
        assert_eq!(tokens.authenticate(&reader).unwrap().role, Role::Reader);
        assert_eq!(tokens.authenticate("guess"), None);
        assert_eq!(tokens.authenticate(""), None);
        // The file holds hashes, not tokens.
        assert!(!text.contains(&writer));
        assert!(!format!("{tokens:?}").contains(&writer_line[10..]));
    }

    #[test]
    fn a_wrong_token_file_is_refused_with_every_problem() {
        let good = hex::encode(hash_token("t"));
        // `u8::from_str_radix("+f", 16)` is 15: a sign is not a hex digit.
        let signed = format!("+f{}", &good[2..]);
        let text = format!(
            "a writer {good}\nb root {good}\nc reader 123\nd reader\na reader {good}\nbad/name reader {good}\ne reader {signed}\n",
        );
        let error = format!("{:#}", Tokens::parse(&text).unwrap_err());
        for expected in [
            "line 2: role \"root\"",
            "line 3: the hash",
            "line 4: expected",
            "line 5: client \"a\" appears twice",
            "line 6: \"bad/name\"",
            "line 7: the hash",
        ] {
            assert!(error.contains(expected), "{expected} in {error}");
        }
        assert!(Tokens::parse("# nobody\n").is_err());
        assert!(new_token("no spaces", Role::Reader).is_err());
    }
}
