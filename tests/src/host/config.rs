//! Reading the function app the way the host does: `host.json` plus one
//! `<FunctionName>/function.json` per folder (functions-facts §3, §5, §8;
//! azure-facts §3.1, §3.4). Keys are looked up case-insensitively, as .NET
//! configuration and binding metadata do.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::{Map, Value};

/// One binding from `function.json`.
#[derive(Debug, Clone)]
pub(crate) struct Binding {
    pub kind: String,
    pub name: String,
    pub direction: String,
    pub queue_name: Option<String>,
    pub data_type: Option<String>,
    pub cardinality: Option<String>,
    /// timerTrigger `schedule`, as written (`%NAME%` not yet expanded).
    pub schedule: Option<String>,
    /// httpTrigger `route` (default: the function name).
    pub route: Option<String>,
    /// httpTrigger `methods` (absent: every method).
    pub methods: Option<Vec<String>>,
    /// httpTrigger `authLevel` (absent: `function`).
    pub auth_level: Option<String>,
}

impl Binding {
    /// `type` compared case-insensitively.
    pub fn is(&self, kind: &str) -> bool {
        self.kind.eq_ignore_ascii_case(kind)
    }

    /// `dataType: binary` switches off the base64 trap (§3).
    pub fn is_binary(&self) -> bool {
        self.data_type
            .as_deref()
            .is_some_and(|d| d.eq_ignore_ascii_case("binary"))
    }
}

/// One function: its folder name and bindings.
#[derive(Debug, Clone)]
pub(crate) struct FunctionDef {
    pub name: String,
    pub bindings: Vec<Binding>,
}

impl FunctionDef {
    /// The trigger binding (type ends in `Trigger`).
    pub fn trigger(&self) -> Option<&Binding> {
        self.bindings
            .iter()
            .find(|b| b.kind.to_ascii_lowercase().ends_with("trigger"))
    }

    /// The `http` output binding (possibly named `$return`).
    pub fn http_output(&self) -> Option<&Binding> {
        self.bindings
            .iter()
            .find(|b| b.is("http") && b.direction.eq_ignore_ascii_case("out"))
    }

    /// Output bindings of type `queue` (including a `$return` one).
    pub fn queue_outputs(&self) -> impl Iterator<Item = &Binding> {
        self.bindings
            .iter()
            .filter(|b| b.is("queue") && b.direction.eq_ignore_ascii_case("out"))
    }
}

/// `extensions.queues` from host.json, with the extension's defaults (§3).
#[derive(Debug, Clone)]
pub(crate) struct QueueSettings {
    pub base64: bool,
    pub batch_size: usize,
    pub new_batch_threshold: usize,
    pub max_dequeue_count: u32,
    pub visibility_timeout: Duration,
}

/// Everything the simulator needs from the app folder.
#[derive(Debug, Clone)]
pub(crate) struct AppConfig {
    pub executable: String,
    pub arguments: Vec<String>,
    pub working_dir: PathBuf,
    pub function_timeout: Option<Duration>,
    pub queues: QueueSettings,
    pub functions: BTreeMap<String, FunctionDef>,
}

/// Case-insensitive object lookup (the last match wins, like Newtonsoft).
pub(crate) fn get_ci<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
        .next_back()
}

fn get_str(obj: &Map<String, Value>, key: &str) -> Option<String> {
    get_ci(obj, key).and_then(Value::as_str).map(str::to_owned)
}

fn get_obj<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Map<String, Value>> {
    get_ci(obj, key).and_then(Value::as_object)
}

fn read_json(path: &Path) -> Result<Map<String, Value>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let value: Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    match value {
        Value::Object(map) => Ok(map),
        _ => anyhow::bail!("{} is not a JSON object", path.display()),
    }
}

/// Expands `%NAME%` from the app settings, then the process environment
/// (host.json `arguments` and binding `queueName` allow this, azure-facts §3.1).
pub(crate) fn expand(text: &str, settings: &[(String, String)]) -> String {
    let re = regex::Regex::new(r"%([A-Za-z0-9_:.\-]+)%").expect("valid regex");
    re.replace_all(text, |c: &regex::Captures| {
        let name = &c[1];
        settings
            .iter()
            .rev()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .or_else(|| std::env::var(name).ok())
            .unwrap_or_else(|| c[0].to_owned())
    })
    .into_owned()
}

/// Parses a .NET TimeSpan such as `00:01:00`, `1.02:03:04` or `00:00:00.250`.
/// `-1` (unbounded functionTimeout) and anything unparsable give `None`.
pub(crate) fn parse_timespan(text: &str) -> Option<Duration> {
    let text = text.trim();
    let (days, rest) = match text.split_once('.') {
        Some((d, r)) if !d.contains(':') => (d.parse::<u64>().ok()?, r),
        _ => (0, text),
    };
    let parts: Vec<&str> = rest.split(':').collect();
    let [h, m, s] = parts.as_slice() else {
        return None;
    };
    let secs: f64 = s.parse().ok()?;
    let whole = days * 86_400 + h.parse::<u64>().ok()? * 3600 + m.parse::<u64>().ok()? * 60;
    Some(Duration::from_secs(whole) + Duration::from_secs_f64(secs))
}

fn queue_settings(host: &Map<String, Value>) -> QueueSettings {
    let q = get_obj(host, "extensions").and_then(|e| get_obj(e, "queues"));
    let num = |key: &str| q.and_then(|q| get_ci(q, key)).and_then(Value::as_u64);
    let batch_size = num("batchSize").unwrap_or(16).clamp(1, 32) as usize;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let encoding = q.and_then(|q| get_str(q, "messageEncoding"));
    QueueSettings {
        base64: !encoding.is_some_and(|e| e.eq_ignore_ascii_case("none")),
        batch_size,
        new_batch_threshold: num("newBatchThreshold").map_or(batch_size / 2 * cpus, |n| n as usize),
        max_dequeue_count: num("maxDequeueCount").unwrap_or(5) as u32,
        visibility_timeout: q
            .and_then(|q| get_str(q, "visibilityTimeout"))
            .and_then(|t| parse_timespan(&t))
            .unwrap_or(Duration::ZERO),
    }
}

fn parse_binding(raw: &Value, settings: &[(String, String)]) -> Option<Binding> {
    let obj = raw.as_object()?;
    Some(Binding {
        kind: get_str(obj, "type")?,
        name: get_str(obj, "name")?,
        direction: get_str(obj, "direction").unwrap_or_else(|| "in".into()),
        queue_name: get_str(obj, "queueName").map(|q| expand(&q, settings).to_ascii_lowercase()),
        data_type: get_str(obj, "dataType"),
        cardinality: get_str(obj, "cardinality"),
        schedule: get_str(obj, "schedule"),
        route: get_str(obj, "route"),
        methods: get_ci(obj, "methods").and_then(Value::as_array).map(|m| {
            m.iter()
                .filter_map(Value::as_str)
                .map(str::to_ascii_uppercase)
                .collect()
        }),
        auth_level: get_str(obj, "authLevel"),
    })
}

fn load_function(dir: &Path, settings: &[(String, String)]) -> Result<Option<FunctionDef>> {
    let path = dir.join("function.json");
    if !path.is_file() {
        return Ok(None);
    }
    let json = read_json(&path)?;
    if get_ci(&json, "disabled").and_then(Value::as_bool) == Some(true) {
        return Ok(None);
    }
    let bindings = get_ci(&json, "bindings").and_then(Value::as_array);
    let bindings = bindings.map(|b| {
        b.iter()
            .filter_map(|b| parse_binding(b, settings))
            .collect()
    });
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(Some(FunctionDef {
        name,
        bindings: bindings.unwrap_or_default(),
    }))
}

/// Reads host.json and every function folder under `root`.
pub(crate) fn load(root: &Path, settings: &[(String, String)]) -> Result<AppConfig> {
    let host = read_json(&root.join("host.json"))?;
    let handler = get_obj(&host, "customHandler").or_else(|| get_obj(&host, "httpWorker"));
    let desc = handler.and_then(|h| get_obj(h, "description"));
    let args = desc
        .and_then(|d| get_ci(d, "arguments"))
        .and_then(Value::as_array);
    let args = args.map(|a| {
        a.iter()
            .filter_map(Value::as_str)
            .map(|s| expand(s, settings))
            .collect()
    });
    let wd = desc
        .and_then(|d| get_str(d, "workingDirectory"))
        .unwrap_or_default();
    let mut functions = BTreeMap::new();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)?
        .filter_map(|e| Some(e.ok()?.path()))
        .collect();
    dirs.sort();
    for dir in dirs.iter().filter(|d| d.is_dir()) {
        if let Some(f) = load_function(dir, settings)? {
            functions.insert(f.name.clone(), f);
        }
    }
    Ok(AppConfig {
        executable: desc
            .and_then(|d| get_str(d, "defaultExecutablePath"))
            .unwrap_or_default(),
        arguments: args.unwrap_or_default(),
        working_dir: if wd.is_empty() {
            root.to_path_buf()
        } else {
            root.join(wd)
        },
        function_timeout: get_str(&host, "functionTimeout").and_then(|t| parse_timespan(&t)),
        queues: queue_settings(&host),
        functions,
    })
}
