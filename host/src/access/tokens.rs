//! API tokens: random secrets shown once, stored only as salted SHA-256
//! hashes in one compare-and-swap document (`access/tokens.json`).

use super::{AccessError, Need, Role, constant_time_eq, random};
use crate::cache::{DocumentCache, DocumentPolicy};
use crate::registry::now_rfc3339;
use crate::store::{ETag, PutMode, StoreError};
use base64::Engine as _;
use bytes::Bytes;
use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::{Arc, RwLock};

const TOKENS: &str = "access/tokens.json";
/// Generated tokens read `slc_<id>_<secret>`: the id finds the stored hash.
const PREFIX: &str = "slc_";
/// The id of the admin token set from `SLUICE_ADMIN_TOKEN`, which may be
/// any string: presented tokens without an id are checked against it.
const ENV_ADMIN_ID: &str = "env-admin";
/// Shortest `SLUICE_ADMIN_TOKEN` accepted.
const MIN_SECRET_CHARS: usize = 16;
/// Verified tokens remembered per node (cleared on any change).
const VERIFIED_MAX: usize = 10_000;
const WRITE_ATTEMPTS: usize = 8;

/// Who a request comes from: a verified token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The token's name (recorded as `created_by` and in the audit log).
    pub name: String,
    /// Its role.
    pub role: Role,
    /// Name prefixes it is limited to (empty: every name).
    pub prefixes: Vec<String>,
}

impl Identity {
    /// Whether this identity may do `need` on `name` (`None`: a route not
    /// about one name).
    pub fn may(&self, need: Need, name: Option<&str>) -> bool {
        self.role.allows(need) && name.is_none_or(|n| self.covers(n))
    }

    /// Whether `name` is within this identity's prefixes.
    pub fn covers(&self, name: &str) -> bool {
        self.prefixes.is_empty() || self.prefixes.iter().any(|p| name.starts_with(p.as_str()))
    }
}

/// What [`Access::bootstrap`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admitted {
    /// An admin could already get in.
    Already,
    /// The `admin` token now has `SLUICE_ADMIN_TOKEN`'s secret.
    FromEnvironment,
    /// A new admin token, to show once.
    Generated(String),
}

/// A token as listed: never its secret or hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    /// Its name.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// Name prefixes it is limited to (empty: every name).
    #[serde(default)]
    pub prefixes: Vec<String>,
    /// When it was created.
    pub created_at: String,
    /// Which token created it.
    pub created_by: String,
    /// When it was revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
}

/// A token just created: its secret, shown this once.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewToken {
    /// What is stored and listed.
    #[serde(flatten)]
    pub info: TokenInfo,
    /// The token to send as `authorization: Bearer <token>`.
    pub token: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    id: String,
    #[serde(flatten)]
    info: TokenInfo,
    /// Hex; the hash is SHA-256(salt ‖ token).
    salt: String,
    hash: String,
}

impl Stored {
    fn new(id: String, info: TokenInfo, token: &str) -> Self {
        let salt = random::<16>();
        Self {
            id,
            info,
            salt: hex::encode(salt),
            hash: hex::encode(hash(&salt, token)),
        }
    }

    fn matches(&self, token: &str) -> bool {
        let (Ok(salt), Ok(stored)) = (hex::decode(&self.salt), hex::decode(&self.hash)) else {
            return false;
        };
        constant_time_eq(&stored, &hash(&salt, token))
    }

    fn live(&self) -> bool {
        self.info.revoked_at.is_none()
    }
}

fn hash(salt: &[u8], token: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(token.as_bytes());
    h.finalize().into()
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct TokenSet {
    tokens: Vec<Stored>,
}

impl TokenSet {
    fn parse(bytes: &[u8]) -> Result<Self, AccessError> {
        serde_json::from_slice(bytes).map_err(|e| AccessError::Corrupt {
            key: TOKENS.into(),
            reason: e.to_string(),
        })
    }

    fn find(&self, token: &str) -> Option<&Stored> {
        let id = token
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split_once('_'))
            .map_or(ENV_ADMIN_ID, |(id, _)| id);
        self.tokens
            .iter()
            .find(|t| t.id == id && t.live())
            .filter(|t| t.matches(token))
    }

    fn live_named(&self, name: &str) -> Option<&Stored> {
        self.tokens.iter().find(|t| t.info.name == name && t.live())
    }
}

/// The tokens as this node last read them, and the tokens verified since.
struct Seen {
    etag: Option<ETag>,
    set: Arc<TokenSet>,
}

/// Access control over the store's tokens.
pub struct Access {
    documents: Arc<DocumentCache>,
    seen: RwLock<Seen>,
    verified: DashMap<Box<str>, Arc<Identity>>,
}

impl Access {
    /// Tokens in `documents`' store.
    pub fn new(documents: Arc<DocumentCache>) -> Self {
        Self {
            documents,
            seen: RwLock::new(Seen {
                etag: None,
                set: Arc::default(),
            }),
            verified: DashMap::new(),
        }
    }

    /// Who sent `token`: a live token's identity, or
    /// [`AccessError::Unauthenticated`].
    pub async fn identify(&self, token: Option<&str>) -> Result<Arc<Identity>, AccessError> {
        let token = token
            .filter(|t| !t.is_empty() && t.len() <= 256)
            .ok_or(AccessError::Unauthenticated)?;
        let set = self.current().await?;
        if let Some(identity) = self.verified.get(token) {
            return Ok(identity.clone());
        }
        let stored = set.find(token).ok_or(AccessError::Unauthenticated)?;
        let identity = Arc::new(Identity {
            name: stored.info.name.clone(),
            role: stored.info.role,
            prefixes: stored.info.prefixes.clone(),
        });
        if self.verified.len() >= VERIFIED_MAX {
            self.verified.clear();
        }
        self.verified.insert(token.into(), identity.clone());
        Ok(identity)
    }

    /// The token set, re-read once per poll interval; what was verified
    /// against an older set is forgotten.
    async fn current(&self) -> Result<Arc<TokenSet>, AccessError> {
        let object = self.documents.get(TOKENS, DocumentPolicy::Mutable).await?;
        let etag = object.as_ref().map(|o| o.etag.clone());
        {
            let seen = self.seen.read().unwrap_or_else(|p| p.into_inner());
            if seen.etag == etag {
                return Ok(seen.set.clone());
            }
        }
        let set = Arc::new(match &object {
            Some(o) => TokenSet::parse(&o.bytes)?,
            None => TokenSet::default(),
        });
        let mut seen = self.seen.write().unwrap_or_else(|p| p.into_inner());
        *seen = Seen {
            etag,
            set: set.clone(),
        };
        self.verified.clear();
        Ok(set)
    }

    /// Make sure an admin can get in on first start: with `admin_token`
    /// (`SLUICE_ADMIN_TOKEN`), a token named `admin` with that secret
    /// (replacing an older one); without it and with no live admin token,
    /// a new one, returned so the caller can show it once.
    pub async fn bootstrap(&self, admin_token: Option<&str>) -> Result<Admitted, AccessError> {
        if let Some(token) = admin_token {
            if token.chars().count() < MIN_SECRET_CHARS {
                return Err(AccessError::Invalid(format!(
                    "SLUICE_ADMIN_TOKEN must be at least {MIN_SECRET_CHARS} characters"
                )));
            }
            let mut changed = false;
            self.update(|set| {
                changed = false;
                if set
                    .tokens
                    .iter()
                    .any(|t| t.id == ENV_ADMIN_ID && t.live() && t.matches(token))
                {
                    return Ok(false);
                }
                changed = true;
                set.tokens
                    .retain(|t| t.id != ENV_ADMIN_ID && !(t.info.name == "admin" && t.live()));
                set.tokens.push(Stored::new(
                    ENV_ADMIN_ID.into(),
                    info("admin", Role::Admin, Vec::new(), "SLUICE_ADMIN_TOKEN"),
                    token,
                ));
                Ok(true)
            })
            .await?;
            return Ok(if changed {
                Admitted::FromEnvironment
            } else {
                Admitted::Already
            });
        }
        let mut created = None;
        self.update(|set| {
            created = None;
            if set
                .tokens
                .iter()
                .any(|t| t.live() && t.info.role == Role::Admin)
            {
                return Ok(false);
            }
            let (id, token) = generate();
            set.tokens.push(Stored::new(
                id,
                info("admin", Role::Admin, Vec::new(), "first start"),
                &token,
            ));
            created = Some(token);
            Ok(true)
        })
        .await?;
        Ok(created.map_or(Admitted::Already, Admitted::Generated))
    }

    /// A new token named `name`; its secret is in the answer only.
    pub async fn create(
        &self,
        name: &str,
        role: Role,
        prefixes: Vec<String>,
        created_by: &str,
    ) -> Result<NewToken, AccessError> {
        check_name(name)?;
        if role == Role::Admin && !prefixes.is_empty() {
            return Err(AccessError::Invalid(
                "an admin token cannot be limited to prefixes (it manages tokens): use deployer"
                    .into(),
            ));
        }
        if let Some(p) = prefixes.iter().find(|p| p.is_empty()) {
            return Err(AccessError::Invalid(format!(
                "prefix `{p}` is empty: leave --prefix out for every name"
            )));
        }
        let mut made = None;
        self.update(|set| {
            if set.live_named(name).is_some() {
                return Err(AccessError::Invalid(format!(
                    "a token named `{name}` exists: revoke it first or choose another name"
                )));
            }
            let (id, token) = generate();
            let info = info(name, role, prefixes.clone(), created_by);
            set.tokens.push(Stored::new(id, info.clone(), &token));
            made = Some(NewToken { info, token });
            Ok(true)
        })
        .await?;
        made.ok_or_else(|| AccessError::Contended(TOKENS.into()))
    }

    /// Every token, revoked ones too, without secrets.
    pub async fn list(&self) -> Result<Vec<TokenInfo>, AccessError> {
        let (set, _) = self.read().await?;
        Ok(set.tokens.into_iter().map(|t| t.info).collect())
    }

    /// Revoke the live token named `name`.
    pub async fn revoke(&self, name: &str) -> Result<TokenInfo, AccessError> {
        let mut revoked = None;
        self.update(|set| {
            let token = set
                .tokens
                .iter_mut()
                .find(|t| t.info.name == name && t.live())
                .ok_or_else(|| AccessError::NotFound(name.into()))?;
            token.info.revoked_at = Some(now_rfc3339());
            revoked = Some(token.info.clone());
            Ok(true)
        })
        .await?;
        revoked.ok_or_else(|| AccessError::NotFound(name.into()))
    }

    async fn read(&self) -> Result<(TokenSet, Option<ETag>), AccessError> {
        match self.documents.fetch(TOKENS).await? {
            Some(o) => Ok((TokenSet::parse(&o.bytes)?, Some(o.etag))),
            None => Ok((TokenSet::default(), None)),
        }
    }

    /// Apply `change` to the stored set by compare-and-swap (when it says
    /// it changed something), retrying against a racing writer.
    async fn update(
        &self,
        mut change: impl FnMut(&mut TokenSet) -> Result<bool, AccessError>,
    ) -> Result<(), AccessError> {
        for _ in 0..WRITE_ATTEMPTS {
            let (mut set, etag) = self.read().await?;
            if !change(&mut set)? {
                return Ok(());
            }
            let bytes = serde_json::to_vec_pretty(&set).map_err(|e| AccessError::Corrupt {
                key: TOKENS.into(),
                reason: e.to_string(),
            })?;
            let mode = etag.map_or(PutMode::IfAbsent, PutMode::IfMatch);
            match self.documents.put(TOKENS, Bytes::from(bytes), mode).await {
                Ok(_) => return Ok(()),
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(AccessError::Contended(TOKENS.into()))
    }
}

fn info(name: &str, role: Role, prefixes: Vec<String>, created_by: &str) -> TokenInfo {
    TokenInfo {
        name: name.into(),
        role,
        prefixes,
        created_at: now_rfc3339(),
        created_by: created_by.into(),
        revoked_at: None,
    }
}

/// A new id and token: `slc_<12 hex>_<32 random bytes, base64url>`.
fn generate() -> (String, String) {
    let id = hex::encode(random::<6>());
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random::<32>());
    let token = format!("{PREFIX}{id}_{secret}");
    (id, token)
}

fn check_name(name: &str) -> Result<(), AccessError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'));
    if ok {
        Ok(())
    } else {
        Err(AccessError::Invalid(format!(
            "token name `{name}` is not valid: 1-64 letters, digits, '-', '_', '.' or '@'"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access() -> (tempfile::TempDir, Access) {
        let (dir, documents) = crate::access::test_documents();
        (dir, Access::new(documents))
    }

    #[tokio::test]
    async fn tokens_verify_until_revoked_and_are_stored_only_hashed() {
        let (dir, access) = access();
        let Admitted::Generated(first) = access.bootstrap(None).await.unwrap() else {
            panic!("no first admin token");
        };
        assert_eq!(access.bootstrap(None).await.unwrap(), Admitted::Already);
        let admin = access.identify(Some(&first)).await.unwrap();
        assert_eq!((admin.name.as_str(), admin.role), ("admin", Role::Admin));

        let made = access
            .create("ci", Role::Deployer, vec!["fraud-".into()], "admin")
            .await
            .unwrap();
        let ci = access.identify(Some(&made.token)).await.unwrap();
        assert!(ci.may(Need::Change, Some("fraud-model")));
        assert!(!ci.may(Need::Change, Some("iris")));
        assert!(!ci.may(Need::Admin, None));
        let stored = std::fs::read_to_string(dir.path().join(TOKENS)).unwrap();
        assert!(!stored.contains(&made.token[12..]), "the secret is stored");

        // A near miss, another token's id with a wrong secret, garbage.
        let mut wrong = made.token.clone();
        wrong.pop();
        wrong.push('x');
        for bad in [wrong.as_str(), "slc_000000000000_x", "", "Bearer"] {
            assert!(access.identify(Some(bad)).await.is_err(), "{bad}");
        }
        access.revoke("ci").await.unwrap();
        // This node reads its own write at once.
        assert!(access.identify(Some(&made.token)).await.is_err());
        let listed = access.list().await.unwrap();
        assert_eq!(listed.len(), 2);
        assert!(listed[1].revoked_at.is_some());
        // A revoked name may be reused.
        access
            .create("ci", Role::Viewer, vec![], "admin")
            .await
            .unwrap();
        assert!(
            access
                .create("ci", Role::Viewer, vec![], "admin")
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn the_admin_token_from_the_environment_replaces_the_old_one() {
        let (_dir, access) = access();
        assert!(access.bootstrap(Some("short")).await.is_err());
        let one = "first-admin-secret-0123456789";
        let two = "second-admin-secret-0123456789";
        assert_eq!(
            access.bootstrap(Some(one)).await.unwrap(),
            Admitted::FromEnvironment
        );
        assert_eq!(
            access.bootstrap(Some(one)).await.unwrap(),
            Admitted::Already
        );
        assert!(access.identify(Some(one)).await.is_ok());
        access.bootstrap(Some(two)).await.unwrap();
        assert!(access.identify(Some(one)).await.is_err());
        assert_eq!(access.identify(Some(two)).await.unwrap().role, Role::Admin);
        assert_eq!(access.bootstrap(None).await.unwrap(), Admitted::Already);
    }
}
