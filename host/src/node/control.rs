//! The one control-plane service: everything that changes or reveals what
//! a node serves, for every kind of registry object, with one set of
//! operations (publish, list, show, version, alias set/remove, rollback,
//! delete). The node implements [`ControlPlane`] over its store;
//! `http::Client` implements it over HTTP against a running node. The CLI
//! and the HTTP handlers only parse, call and print or encode.

use super::Judged;
use super::{FunctionVersion, Node, NodeError};
use crate::access::{Admitted, AuditRecord, Broken, Change, NewToken, Role, TokenInfo};
use crate::engine::{StageLimits, World};
use crate::features::{Compacted, Format, Ingested, TableVersion};
use crate::inference::drift::Report as DriftReport;
use crate::inference::{ModelVersion, Push};
use crate::pipeline::PipelineVersion;
use crate::registry::rollout::RolloutChange;
use crate::registry::{
    Guard, Head, Invocation, Name, Record, RegistryError, Rollout, Selector, now_rfc3339,
};
use crate::store::{Digest, Progress};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// A kind of registry object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Stage components (`sluice deploy`).
    Function,
    /// ONNX models (`sluice models push`).
    Model,
    /// Step graphs (`sluice deploy pipeline.toml`).
    Pipeline,
    /// Feature table schemas (`sluice features apply table.toml`).
    Table,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 4] = [Kind::Function, Kind::Model, Kind::Pipeline, Kind::Table];

    /// What users call one: `function`.
    pub fn noun(self) -> &'static str {
        match self {
            Self::Function => FunctionVersion::NOUN,
            Self::Model => ModelVersion::NOUN,
            Self::Pipeline => PipelineVersion::NOUN,
            Self::Table => TableVersion::NOUN,
        }
    }

    /// Its store folder and URL segment: `functions`.
    pub fn plural(self) -> &'static str {
        match self {
            Self::Function => FunctionVersion::KIND,
            Self::Model => ModelVersion::KIND,
            Self::Pipeline => PipelineVersion::KIND,
            Self::Table => TableVersion::KIND,
        }
    }
}

/// A function deploy's settings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Deploy {
    /// Configuration the stage reads through `config`.
    pub config: BTreeMap<String, String>,
    /// Keys of `config` whose values are secret: never answered by the API.
    pub secrets: std::collections::BTreeSet<String>,
    /// Deadline of one call, in milliseconds.
    pub timeout_ms: Option<u64>,
    /// Memory cap in bytes.
    pub memory_bytes: Option<u64>,
    /// Fuel per call.
    pub fuel: Option<u64>,
    /// Most calls of this version running at once.
    pub max_concurrency: Option<u32>,
    /// Calls waiting for a slot when `max_concurrency` are running
    /// (default 0 with a cap set: turn away at once).
    pub max_queue: Option<u32>,
    /// Idle seconds before a node unloads this version (0: never; unset:
    /// the node's `--function-idle-secs`).
    pub idle_secs: Option<u64>,
    /// Origins its outgoing HTTP requests may reach (none: denied).
    pub allow_outbound: Vec<crate::engine::Origin>,
    /// A description.
    pub description: Option<String>,
    /// Labels recorded with the version.
    pub labels: BTreeMap<String, String>,
    /// Who deploys.
    pub created_by: String,
}

/// What a new version is published with: the settings of its kind.
#[derive(Debug, Clone)]
pub enum Settings {
    /// A component, deployed as a function.
    Function(Deploy),
    /// An ONNX file, pushed as a model.
    Model(Push),
    /// A pipeline manifest (TOML or JSON), deployed as a pipeline.
    Pipeline {
        /// Who deploys.
        created_by: String,
    },
    /// A feature table's schema (`table.toml`), applied as a table.
    Table {
        /// Start a new version with empty data even when the schema is
        /// compatible; needed when it is not.
        new_version: bool,
        /// Who applies it.
        created_by: String,
    },
}

impl Settings {
    /// Record `who` as the publisher, whatever the request said.
    fn published_by(&mut self, who: &str) {
        let created_by = match self {
            Self::Function(deploy) => &mut deploy.created_by,
            Self::Model(push) => &mut push.created_by,
            Self::Pipeline { created_by } | Self::Table { created_by, .. } => created_by,
        };
        *created_by = who.to_string();
    }

    /// The kind of object these settings publish.
    pub fn kind(&self) -> Kind {
        match self {
            Self::Function(_) => Kind::Function,
            Self::Model(_) => Kind::Model,
            Self::Pipeline { .. } => Kind::Pipeline,
            Self::Table { .. } => Kind::Table,
        }
    }
}

/// One version record, of any kind.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Version {
    /// A function version.
    Function(FunctionVersion),
    /// A model version.
    Model(ModelVersion),
    /// A pipeline version.
    Pipeline(PipelineVersion),
    /// A feature table version.
    Table(TableVersion),
}

impl From<TableVersion> for Version {
    fn from(v: TableVersion) -> Self {
        Self::Table(v)
    }
}

impl From<PipelineVersion> for Version {
    fn from(v: PipelineVersion) -> Self {
        Self::Pipeline(v)
    }
}

impl From<FunctionVersion> for Version {
    fn from(v: FunctionVersion) -> Self {
        Self::Function(v)
    }
}

impl From<ModelVersion> for Version {
    fn from(v: ModelVersion) -> Self {
        Self::Model(v)
    }
}

impl Version {
    /// Its kind.
    pub fn kind(&self) -> Kind {
        match self {
            Self::Function(_) => Kind::Function,
            Self::Model(_) => Kind::Model,
            Self::Pipeline(_) => Kind::Pipeline,
            Self::Table(_) => Kind::Table,
        }
    }

    /// A record of `kind` from its JSON.
    pub fn from_json(kind: Kind, json: serde_json::Value) -> Result<Self, serde_json::Error> {
        Ok(match kind {
            Kind::Function => Self::Function(serde_json::from_value(json)?),
            Kind::Model => Self::Model(serde_json::from_value(json)?),
            Kind::Pipeline => Self::Pipeline(serde_json::from_value(json)?),
            Kind::Table => Self::Table(serde_json::from_value(json)?),
        })
    }

    /// The name.
    pub fn name(&self) -> &str {
        match self {
            Self::Function(v) => &v.name,
            Self::Model(v) => &v.name,
            Self::Pipeline(v) => &v.name,
            Self::Table(v) => &v.name,
        }
    }

    /// The version number.
    pub fn number(&self) -> u64 {
        match self {
            Self::Function(v) => v.version,
            Self::Model(v) => v.version,
            Self::Pipeline(v) => v.version,
            Self::Table(v) => v.version,
        }
    }

    /// The digest of the stored artifact (a pipeline or table is its
    /// record).
    pub fn digest(&self) -> Option<&Digest> {
        match self {
            Self::Function(v) => Some(&v.digest),
            Self::Model(v) => Some(&v.digest),
            Self::Pipeline(_) | Self::Table(_) => None,
        }
    }

    /// The artifact's size in bytes.
    pub fn size(&self) -> Option<u64> {
        match self {
            Self::Function(v) => Some(v.size),
            Self::Model(v) => Some(v.size),
            Self::Pipeline(_) | Self::Table(_) => None,
        }
    }

    /// This record as the API answers it: a function's secret
    /// configuration values hidden.
    pub fn redacted(self) -> Self {
        match self {
            Self::Function(v) => Self::Function(v.redacted()),
            other => other,
        }
    }

    /// The world, for a function.
    pub fn world(&self) -> Option<World> {
        match self {
            Self::Function(v) => Some(v.world),
            Self::Model(_) | Self::Pipeline(_) | Self::Table(_) => None,
        }
    }
}

/// What publishing produced.
#[derive(Debug, Clone)]
pub struct Published {
    /// The version record.
    pub version: Version,
    /// False when identical to the newest version, which was returned.
    pub created: bool,
}

/// One name in a listing: its aliases and its newest version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// The name.
    pub name: String,
    /// The newest version number.
    pub latest: u64,
    /// The version an unqualified call runs (`stable`, else `latest`).
    pub default: u64,
    /// How many live versions exist.
    pub versions: usize,
    /// Alias → version.
    pub aliases: BTreeMap<String, u64>,
    /// The newest version's world (functions only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub world: Option<World>,
}

impl Summary {
    fn new(head: &Head, newest: &Version) -> Self {
        Self {
            name: newest.name().to_string(),
            latest: newest.number(),
            default: head.default_version().unwrap_or(newest.number()),
            versions: head.versions.len(),
            aliases: head.aliases.clone(),
            world: newest.world(),
        }
    }
}

/// One name's state: its head (live versions, aliases, their history) and
/// every live version's record.
#[derive(Debug, Clone)]
pub struct Listing {
    /// Live versions, aliases and their history.
    pub head: Head,
    /// The records, ascending.
    pub versions: Vec<Version>,
}

/// A name's rollout as `rollout status` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RolloutStatus {
    /// The name.
    pub name: String,
    /// The version an unqualified call runs outside the rollout.
    pub stable: Option<u64>,
    /// The active rollout, or how the last one ended.
    pub rollout: Option<Rollout>,
    /// What the answering node saw of the active rollout's calls (only for
    /// a rollout with an SLO, once this node routed one of its calls).
    pub node: Option<Judged>,
}

/// A name's guard as `guard show` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GuardStatus {
    /// The name.
    pub name: String,
    /// Its guard, if it has one.
    pub guard: Option<Guard>,
    /// The answering node.
    pub node: String,
    /// Nodes it counts as sharing the store (rate limits are divided by
    /// this).
    pub live_nodes: u32,
    /// The answering node's circuits of the name's versions (only those
    /// called since the breaker was set).
    pub circuits: Vec<CircuitView>,
}

/// One version's circuit on one node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CircuitView {
    /// The version.
    pub version: u64,
    /// `closed`, `open` or `half_open`.
    pub state: String,
    /// While open: seconds until it is probed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_in_secs: Option<u64>,
}

/// Everything that changes or reveals what a node serves.
#[async_trait::async_trait]
pub trait ControlPlane: Send + Sync {
    /// How a call fails.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Store `artifact` as a new version of `name` (or return the newest
    /// version when it is identical), checked for its kind: a component
    /// must fit a world, a model must load.
    async fn publish(
        &self,
        name: &str,
        artifact: Bytes,
        settings: Settings,
        progress: Progress<'_>,
    ) -> Result<Published, Self::Error>;

    /// Every name of `kind` with its newest version.
    async fn list(&self, kind: Kind) -> Result<Vec<Summary>, Self::Error>;

    /// The head and every live version of `name`.
    async fn show(&self, kind: Kind, name: &str) -> Result<Listing, Self::Error>;

    /// One version's record.
    async fn version(&self, kind: Kind, name: &str, version: u64) -> Result<Version, Self::Error>;

    /// The drift of a model version (`None`: the one an unqualified call
    /// runs) over the window, every node's rows merged.
    async fn drift(&self, model: &str, version: Option<u64>) -> Result<DriftReport, Self::Error>;

    /// Start, move, promote or abort the rollout of `name`. Returns the
    /// head, with the rollout.
    async fn rollout(
        &self,
        kind: Kind,
        name: &str,
        change: RolloutChange,
    ) -> Result<Head, Self::Error>;

    /// The rollout of `name` (active, or how the last one ended) and what
    /// the answering node saw of it.
    async fn rollout_status(&self, kind: Kind, name: &str) -> Result<RolloutStatus, Self::Error>;

    /// Set the guard of `name` (fallback, circuit breaker, rate limits),
    /// replacing the one it had; `None` (or an empty guard) clears it.
    /// Returns the head.
    async fn set_guard(
        &self,
        kind: Kind,
        name: &str,
        guard: Option<Guard>,
    ) -> Result<Head, Self::Error>;

    /// The guard of `name` and the answering node's circuits of it.
    async fn guard_status(&self, kind: Kind, name: &str) -> Result<GuardStatus, Self::Error>;

    /// Point `alias` at `version`; with `expect`, only if it points at
    /// that version now (`Some(None)`: only if it does not exist yet).
    async fn set_alias(
        &self,
        kind: Kind,
        name: &str,
        alias: &str,
        version: u64,
        expect: Option<Option<u64>>,
    ) -> Result<Head, Self::Error>;

    /// Remove `alias`.
    async fn remove_alias(&self, kind: Kind, name: &str, alias: &str) -> Result<Head, Self::Error>;

    /// Move `alias` back to the version it pointed at before.
    async fn rollback(&self, kind: Kind, name: &str, alias: &str) -> Result<Head, Self::Error>;

    /// Delete a version (refused while an alias other than `latest`
    /// points at it).
    async fn delete(&self, kind: Kind, name: &str, version: u64) -> Result<(), Self::Error>;

    /// Set who may call a function, model or pipeline on the data plane
    /// (a name that has no versions yet may be closed before its first).
    async fn set_invocation(
        &self,
        kind: Kind,
        name: &str,
        invocation: Invocation,
    ) -> Result<Head, Self::Error>;

    /// Ingest a file of rows into a feature table's current version, all
    /// or nothing, streamed (the file may be larger than memory).
    async fn ingest(
        &self,
        table: &str,
        format: Format,
        file: Box<dyn tokio::io::AsyncRead + Send + Unpin>,
    ) -> Result<Ingested, Self::Error>;

    /// Append rows (JSON objects keyed by column name) to a feature table;
    /// answered once they are durable, joined with other appends arriving
    /// at the same time into one commit.
    async fn append(
        &self,
        table: &str,
        rows: Vec<serde_json::Value>,
    ) -> Result<Ingested, Self::Error>;

    /// Merge a feature table's small history segments and delete objects
    /// no reader needs, keeping replaced ones for `grace` first.
    async fn compact(&self, table: &str, grace: Duration) -> Result<Compacted, Self::Error>;

    /// Create an API token; its secret is in this answer only.
    async fn create_token(
        &self,
        name: &str,
        role: Role,
        prefixes: Vec<String>,
    ) -> Result<NewToken, Self::Error>;

    /// Every token (revoked ones too), without secrets.
    async fn tokens(&self) -> Result<Vec<TokenInfo>, Self::Error>;

    /// Revoke the live token named `name`.
    async fn revoke_token(&self, name: &str) -> Result<TokenInfo, Self::Error>;

    /// The audit log from `since` (RFC 3339), oldest first.
    async fn audit_log(&self, since: Option<&str>) -> Result<Vec<AuditRecord>, Self::Error>;

    /// Check the audit log's chain: how many records are intact, or where
    /// it breaks.
    async fn audit_verify(&self) -> Result<Result<u64, Broken>, Self::Error>;
}

/// `name` as a thing rollouts route: a function, model or pipeline.
fn rolled_out(kind: Kind, name: &str) -> Result<Name, NodeError> {
    if kind == Kind::Table {
        return Err(NodeError::InvalidSetting(
            "feature tables are not called on the data plane, so they have no rollouts; roll out the stage or pipeline that reads them".into(),
        ));
    }
    Ok(Name::parse(name)?)
}

/// The node's control plane acting for someone (a token's name, or
/// `local:<user>` for the CLI on the store): every change it makes is
/// recorded in the audit log under that name. The only way to change what
/// a node serves.
pub struct Acting<'a> {
    node: &'a Node,
    actor: String,
}

impl std::ops::Deref for Acting<'_> {
    type Target = Node;

    fn deref(&self) -> &Node {
        self.node
    }
}

impl Node {
    /// The control plane, acting for `actor`.
    pub fn acting(&self, actor: impl Into<String>) -> Acting<'_> {
        Acting {
            node: self,
            actor: actor.into(),
        }
    }
}

impl Node {
    /// Make sure an admin can reach the control plane ([`Access::bootstrap`](crate::access::Access::bootstrap)),
    /// recording a new admin token in the audit log; a generated token is
    /// returned to be shown once.
    pub async fn admit_admin(&self, token: Option<&str>) -> Result<Option<String>, NodeError> {
        let admitted = self.access.bootstrap(token).await?;
        let detail = match &admitted {
            Admitted::Already => return Ok(None),
            Admitted::FromEnvironment => "admin, from SLUICE_ADMIN_TOKEN",
            Admitted::Generated(_) => "admin, generated on first start",
        };
        self.acting("node")
            .audited(Change::new("token.create", "token", "admin").detail(detail))
            .await?;
        Ok(match admitted {
            Admitted::Generated(token) => Some(token),
            _ => None,
        })
    }
}

impl Acting<'_> {
    /// Record `change` in the audit log. The change has landed: a log
    /// that cannot be written is an error the caller must see.
    pub(super) async fn audited(&self, change: Change) -> Result<(), NodeError> {
        self.audit
            .append(&self.actor, change)
            .await
            .map(drop)
            .map_err(|e| NodeError::Audit(e.to_string()))
    }
}

#[async_trait::async_trait]
impl ControlPlane for Acting<'_> {
    type Error = NodeError;

    async fn publish(
        &self,
        name: &str,
        artifact: Bytes,
        mut settings: Settings,
        progress: Progress<'_>,
    ) -> Result<Published, NodeError> {
        let name = Name::parse(name)?;
        settings.published_by(&self.actor);
        let published = match settings {
            Settings::Function(deploy) => self.deploy(&name, artifact, deploy, progress).await?,
            Settings::Model(push) => {
                let (version, created) = self.models.push(&name, artifact, push, progress).await?;
                Published {
                    version: version.into(),
                    created,
                }
            }
            Settings::Pipeline { created_by } => {
                let manifest = crate::pipeline::parse_one(&artifact)?;
                self.deploy_pipeline(&name, manifest, created_by).await?
            }
            Settings::Table {
                new_version,
                created_by,
            } => {
                let text = std::str::from_utf8(&artifact).map_err(|_| {
                    NodeError::InvalidSetting("table.toml is not UTF-8 text".into())
                })?;
                let (version, created) = self.features.apply(text, new_version, created_by).await?;
                if version.name != name.as_str() {
                    return Err(NodeError::InvalidSetting(format!(
                        "the schema names table `{}`, not `{name}`; apply it under its own name",
                        version.name
                    )));
                }
                Published {
                    version: version.into(),
                    created,
                }
            }
        };
        let v = &published.version;
        tracing::info!(kind = v.kind().noun(), name = %name, version = v.number(), created = published.created, "published");
        if published.created {
            let change = Change::new("publish", v.kind().noun(), name.as_str()).version(v.number());
            self.audited(change).await?;
        }
        Ok(published)
    }

    async fn list(&self, kind: Kind) -> Result<Vec<Summary>, NodeError> {
        Ok(on_registry!(self, kind, |registry| registry
            .list()
            .await?
            .into_iter()
            .map(|(head, newest)| Summary::new(&head, &newest.into()))
            .collect()))
    }

    async fn show(&self, kind: Kind, name: &str) -> Result<Listing, NodeError> {
        let name = Name::parse(name)?;
        on_registry!(self, kind, |registry| {
            let (head, versions) = registry.versions(&name).await?;
            Ok(Listing {
                head,
                versions: versions.into_iter().map(Version::from).collect(),
            })
        })
    }

    async fn version(&self, kind: Kind, name: &str, version: u64) -> Result<Version, NodeError> {
        let name = Name::parse(name)?;
        on_registry!(self, kind, |registry| Ok(registry
            .resolve(&name, &Selector::Version(version))
            .await?
            .into()))
    }

    async fn drift(&self, model: &str, version: Option<u64>) -> Result<DriftReport, NodeError> {
        let selector = version.map_or(Selector::Default, Selector::Version);
        Node::drift(self, model, &selector).await
    }

    async fn rollout(
        &self,
        kind: Kind,
        name: &str,
        change: RolloutChange,
    ) -> Result<Head, NodeError> {
        let name = rolled_out(kind, name)?;
        let by = self.actor.as_str();
        let (head, _) = on_registry!(self, kind, |registry| registry
            .update(&name, |head| {
                change.apply(kind.noun(), &name, head, by, now_rfc3339())?;
                Ok(true)
            })
            .await?);
        let Some(rollout) = &head.rollout else {
            return Err(NodeError::Engine("a rollout change left no rollout".into()));
        };
        let detail = match &change {
            RolloutChange::Start { .. } => {
                let mut detail =
                    format!("{} → {} at {}%", rollout.from, rollout.to, rollout.weight);
                if rollout.shadow {
                    detail.push_str(", shadow");
                }
                if let Some(key) = &rollout.sticky {
                    detail.push_str(&format!(", sticky by {key}"));
                }
                if let Some(slo) = &rollout.slo {
                    detail.push_str(&format!(
                        ", SLO: errors +{} at most, p95 ×{} at most, over {} s",
                        slo.max_error_rate, slo.max_p95_ratio, slo.window_secs
                    ));
                }
                detail
            }
            RolloutChange::Set { weight } => format!("{} at {weight}%", rollout.to),
            RolloutChange::Promote => format!("stable → {}", rollout.to),
            RolloutChange::Abort => format!("back to {}", rollout.from),
        };
        tracing::info!(kind = kind.noun(), %name, action = change.action(), %detail, "rollout changed");
        let change = Change::new(change.action(), kind.noun(), name.as_str())
            .version(rollout.to)
            .detail(detail);
        self.audited(change).await?;
        Ok(head)
    }

    async fn rollout_status(&self, kind: Kind, name: &str) -> Result<RolloutStatus, NodeError> {
        let name = rolled_out(kind, name)?;
        let head = on_registry!(self, kind, |registry| registry.head(&name).await?);
        let (head, _) = head.ok_or_else(|| RegistryError::NotFound {
            noun: kind.noun(),
            name: name.to_string(),
        })?;
        Ok(RolloutStatus {
            name: name.to_string(),
            stable: head.default_version(),
            rollout: head.rollout.clone(),
            node: self.judged_here(kind, &name),
        })
    }

    async fn set_guard(
        &self,
        kind: Kind,
        name: &str,
        guard: Option<Guard>,
    ) -> Result<Head, NodeError> {
        let name = rolled_out(kind, name)?;
        let guard = guard.filter(|g| !g.is_empty());
        if let Some(g) = &guard
            && g.breaker.is_some()
            && kind == Kind::Pipeline
        {
            return Err(NodeError::InvalidSetting(
                "a pipeline has no circuit of its own: breakers are per stage and per model; set one on the functions and models its steps call (a pipeline's fallback answers when their circuit is open)".into(),
            ));
        }
        let (head, _) = on_registry!(self, kind, |registry| registry
            .update(&name, |head| {
                if let Some(g) = &guard {
                    g.check(kind.noun(), &name, head)?;
                }
                head.guard = guard.clone();
                Ok(true)
            })
            .await?);
        let (action, detail) = match &guard {
            Some(g) => ("guard.set", serde_json::to_string(g).unwrap_or_default()),
            None => ("guard.clear", String::new()),
        };
        tracing::info!(kind = kind.noun(), %name, action, %detail, "guard changed");
        self.audited(Change::new(action, kind.noun(), name.as_str()).detail(detail))
            .await?;
        Ok(head)
    }

    async fn guard_status(&self, kind: Kind, name: &str) -> Result<GuardStatus, NodeError> {
        let name = rolled_out(kind, name)?;
        let head = on_registry!(self, kind, |registry| registry.existing_head(&name).await?);
        Ok(GuardStatus {
            name: name.to_string(),
            guard: head.0.guard.clone(),
            node: crate::observe::node_id().to_string(),
            live_nodes: self.live_nodes(),
            circuits: self.circuits_of(kind, &name),
        })
    }

    async fn set_alias(
        &self,
        kind: Kind,
        name: &str,
        alias: &str,
        version: u64,
        expect: Option<Option<u64>>,
    ) -> Result<Head, NodeError> {
        let (name, alias) = (Name::parse(name)?, Name::parse(alias)?);
        let head = on_registry!(self, kind, |registry| registry
            .set_alias(&name, &alias, version, expect)
            .await?);
        tracing::info!(kind = kind.noun(), %name, %alias, version, "alias moved");
        let change = Change::new("alias.set", kind.noun(), name.as_str())
            .version(version)
            .detail(format!("{alias} → {version}"));
        self.audited(change).await?;
        Ok(head)
    }

    async fn remove_alias(&self, kind: Kind, name: &str, alias: &str) -> Result<Head, NodeError> {
        let (name, alias) = (Name::parse(name)?, Name::parse(alias)?);
        let head = on_registry!(self, kind, |registry| registry
            .remove_alias(&name, &alias)
            .await?);
        tracing::info!(kind = kind.noun(), %name, %alias, "alias removed");
        let change = Change::new("alias.remove", kind.noun(), name.as_str()).detail(alias.as_str());
        self.audited(change).await?;
        Ok(head)
    }

    async fn rollback(&self, kind: Kind, name: &str, alias: &str) -> Result<Head, NodeError> {
        let (name, alias) = (Name::parse(name)?, Name::parse(alias)?);
        let head = on_registry!(self, kind, |registry| registry
            .rollback(&name, &alias)
            .await?);
        let now = head.aliases.get(alias.as_str()).copied();
        tracing::info!(kind = kind.noun(), %name, %alias, version = now, "rolled back");
        let mut change = Change::new("rollback", kind.noun(), name.as_str());
        if let Some(version) = now {
            change = change
                .version(version)
                .detail(format!("{alias} → {version}"));
        }
        self.audited(change).await?;
        Ok(head)
    }

    async fn set_invocation(
        &self,
        kind: Kind,
        name: &str,
        invocation: Invocation,
    ) -> Result<Head, NodeError> {
        let name = Name::parse(name)?;
        if kind == Kind::Table {
            return Err(NodeError::InvalidSetting(
                "feature tables are not called on the data plane (stages read them through `features`); set invocation on a function, model or pipeline".into(),
            ));
        }
        let head = on_registry!(self, kind, |registry| registry
            .set_invocation(&name, invocation)
            .await?);
        tracing::info!(kind = kind.noun(), %name, invocation = invocation.as_str(), "invocation set");
        self.audited(
            Change::new("invocation", kind.noun(), name.as_str()).detail(invocation.as_str()),
        )
        .await?;
        Ok(head)
    }

    async fn delete(&self, kind: Kind, name: &str, version: u64) -> Result<(), NodeError> {
        let name = Name::parse(name)?;
        on_registry!(self, kind, |registry| registry
            .delete(&name, version)
            .await?);
        // Forget it on this node at once; other nodes follow within their
        // poll interval.
        match kind {
            Kind::Function => {
                self.templates.remove(&(name.clone(), version));
                self.prune_gates();
            }
            Kind::Model => self.models.forget(&name, version),
            Kind::Pipeline => self.forget_plan(&name, version),
            // Its data stays: later versions may share it.
            Kind::Table => {}
        }
        tracing::info!(kind = kind.noun(), %name, version, "version deleted");
        self.audited(Change::new("delete", kind.noun(), name.as_str()).version(version))
            .await
    }

    async fn ingest(
        &self,
        table: &str,
        format: Format,
        file: Box<dyn tokio::io::AsyncRead + Send + Unpin>,
    ) -> Result<Ingested, NodeError> {
        // Parsing is blocking work: it reads the stream through a bridge on
        // a blocking thread.
        let reader = tokio_util::io::SyncIoBridge::new(file);
        let ingested = self
            .features
            .ingest(table, format, Box::new(reader))
            .await?;
        self.audited(ingested_change("ingest", &ingested)).await?;
        Ok(ingested)
    }

    async fn append(
        &self,
        table: &str,
        rows: Vec<serde_json::Value>,
    ) -> Result<Ingested, NodeError> {
        let ingested = self.features.append(table, &rows).await?;
        self.audited(ingested_change("append", &ingested)).await?;
        Ok(ingested)
    }

    async fn compact(&self, table: &str, grace: Duration) -> Result<Compacted, NodeError> {
        let compacted = self.features.compact(table, grace).await?;
        let change = Change::new("compact", TableVersion::NOUN, table).detail(format!(
            "{} → {} segments, {} objects swept",
            compacted.segments_before, compacted.segments_after, compacted.swept
        ));
        self.audited(change).await?;
        Ok(compacted)
    }

    async fn create_token(
        &self,
        name: &str,
        role: Role,
        prefixes: Vec<String>,
    ) -> Result<NewToken, NodeError> {
        let made = self
            .access
            .create(name, role, prefixes, &self.actor)
            .await?;
        let mut detail = role.to_string();
        if !made.info.prefixes.is_empty() {
            detail = format!("{detail}, prefixes {}", made.info.prefixes.join(","));
        }
        self.audited(Change::new("token.create", "token", name).detail(detail))
            .await?;
        Ok(made)
    }

    async fn tokens(&self) -> Result<Vec<TokenInfo>, NodeError> {
        Ok(self.access.list().await?)
    }

    async fn revoke_token(&self, name: &str) -> Result<TokenInfo, NodeError> {
        let revoked = self.access.revoke(name).await?;
        self.audited(Change::new("token.revoke", "token", name))
            .await?;
        Ok(revoked)
    }

    async fn audit_log(&self, since: Option<&str>) -> Result<Vec<AuditRecord>, NodeError> {
        Ok(self.audit.log(since).await?)
    }

    async fn audit_verify(&self) -> Result<Result<u64, Broken>, NodeError> {
        Ok(self.audit.verify().await?)
    }
}

/// The audit record of rows written to a table.
fn ingested_change(action: &str, ingested: &Ingested) -> Change {
    Change::new(action, TableVersion::NOUN, &ingested.table)
        .version(ingested.version)
        .detail(format!("{} rows", ingested.committed.rows))
}

impl Node {
    /// Validate, compile and register a component as a new version.
    async fn deploy(
        &self,
        name: &Name,
        bytes: Bytes,
        request: Deploy,
        progress: Progress<'_>,
    ) -> Result<Published, NodeError> {
        let limits = self.limits(&request)?;
        let concurrency = self.concurrency(&request)?;
        let (world, cwasm) = self.compile(bytes.clone()).await?;
        self.check_same_kind(name, world).await?;
        // Blob and artifact first, record and head last: a reader never
        // finds a version whose bytes are missing.
        let size = bytes.len() as u64;
        let digest = self.documents.put_blob(bytes, progress).await?;
        self.store_artifact(&digest, &cwasm).await?;
        let record = FunctionVersion {
            name: name.to_string(),
            version: 0,
            digest,
            world,
            size,
            created_at: now_rfc3339(),
            created_by: request.created_by,
            description: request.description,
            labels: request.labels,
            config: request.config,
            secrets: request.secrets,
            limits,
            concurrency,
            idle_secs: request.idle_secs,
            allow_outbound: request.allow_outbound,
        };
        let (version, created) = self.functions.record(name, record).await?;
        Ok(Published {
            version: version.into(),
            created,
        })
    }

    fn limits(&self, request: &Deploy) -> Result<StageLimits, NodeError> {
        let defaults = StageLimits::default();
        let ceiling = self.engine.config().max_memory_bytes;
        let limits = StageLimits {
            timeout_ms: request.timeout_ms.unwrap_or(defaults.timeout_ms),
            memory_bytes: request
                .memory_bytes
                .unwrap_or(defaults.memory_bytes.min(ceiling)),
            fuel: request.fuel.unwrap_or(defaults.fuel),
        };
        if limits.timeout_ms == 0 || limits.timeout_ms > 15 * 60 * 1000 {
            return Err(NodeError::InvalidSetting(format!(
                "timeout_ms must be between 1 and 900000 (15 minutes), got {}",
                limits.timeout_ms
            )));
        }
        let fuel = StageLimits::fuel_range();
        if !fuel.contains(&limits.fuel) {
            return Err(NodeError::InvalidSetting(format!(
                "fuel must be between {} and {}, got {}",
                fuel.start(),
                fuel.end(),
                limits.fuel
            )));
        }
        if limits.memory_bytes < (1 << 20) || limits.memory_bytes > ceiling {
            return Err(NodeError::InvalidSetting(format!(
                "memory must be between 1 MiB and this node's ceiling of {} MiB (--max-memory-mb), got {} bytes",
                ceiling >> 20,
                limits.memory_bytes
            )));
        }
        Ok(limits)
    }

    fn concurrency(&self, request: &Deploy) -> Result<Option<super::Concurrency>, NodeError> {
        let pool = self.engine.config().max_instances;
        match (request.max_concurrency, request.max_queue) {
            (None, None) => Ok(None),
            (None, Some(_)) => Err(NodeError::InvalidSetting(
                "max_queue needs max_concurrency: the queue is in front of a concurrency cap"
                    .into(),
            )),
            (Some(max), _) if max == 0 || max > pool => Err(NodeError::InvalidSetting(format!(
                "max_concurrency must be between 1 and this node's instance pool of {pool} (--max-instances), got {max}"
            ))),
            (Some(_), Some(queue)) if queue > 100_000 => Err(NodeError::InvalidSetting(format!(
                "max_queue must be at most 100000, got {queue}"
            ))),
            (Some(max), queue) => Ok(Some(super::Concurrency {
                max,
                queue: queue.unwrap_or(0),
            })),
        }
    }
}
