//! Reading the JSON configs the command line and notebooks take, strictly.
//!
//! A misspelt key must not be silently ignored: `"max_update": 10` would otherwise leave the default
//! (or another key) in force and the run would quietly do something else. Every config goes through
//! [`read_json_config`], which rejects a key the config type does not know, naming the file, the line,
//! the key's path and the nearest valid key. Out-of-range values are checked by each config's own
//! `check` with [`Checks`], which names the key.
//!
//! Unknown keys are found by comparing the file with the parsed config written back to JSON (every
//! config type serialises all its fields), which also works through `#[serde(flatten)]` sections and
//! tagged enums, where serde's `deny_unknown_fields` does not.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Location, Result};

/// Reads a JSON config of type `T` (`what` names it in errors: "pretraining config"), refusing keys
/// that `T` does not have.
pub fn read_json_config<T: DeserializeOwned + Serialize>(path: &Path, what: &str) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    parse_json_config(&text, path, what)
}

/// As [`read_json_config`], from text already read (`path` only names the source in errors).
pub fn parse_json_config<T: DeserializeOwned + Serialize>(text: &str, path: &Path, what: &str) -> Result<T> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| Error::data(Location::line(path, e.line()), format!("not a {what}: {e}")))?;
    let config: T = serde_json::from_str(text).map_err(|e| deserialize_error(text, path, what, &e))?;
    let known = serde_json::to_value(&config).expect("a config serialises");
    let mut unknown = Vec::new();
    unknown_keys(&value, &known, "", &mut unknown);
    if let Some((key_path, key, valid)) = unknown.into_iter().next() {
        let line = key_lines(text).remove(&key_path).or_else(|| key_line(text, &key));
        let location = line.map_or_else(|| Location::file(path), |l| Location::line(path, l));
        return Err(Error::data(location, unknown_key_message(what, &key_path, &key, &valid)));
    }
    Ok(config)
}

/// "unknown key `train.max_update` in the pretraining config; did you mean `max_updates`? (valid
/// here: …)".
fn unknown_key_message(what: &str, key_path: &str, key: &str, valid: &[String]) -> String {
    let hint = match nearest(key, valid.iter().map(String::as_str)) {
        Some(n) => format!("; did you mean `{n}`?"),
        None => String::new(),
    };
    format!("unknown key `{key_path}` in the {what}{hint} (valid keys here: {})", valid.join(", "))
}

/// Keys of `given` that are absent from `known` (the same config written back), as (dotted path,
/// key, valid keys at that level). A key set to `null` and absent is an `Option` left at its default
/// either way, so it is not reported.
fn unknown_keys(given: &Value, known: &Value, prefix: &str, out: &mut Vec<(String, String, Vec<String>)>) {
    match (given, known) {
        (Value::Object(g), Value::Object(k)) => {
            for (key, value) in g {
                let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                match k.get(key) {
                    Some(inner) => unknown_keys(value, inner, &path, out),
                    // Defaults the serialisation leaves out: an absent option, an empty list
                    // (`lr_scales`), the default precision; giving them changes nothing either way.
                    None if value.is_null()
                        || value.as_array().is_some_and(|a| a.is_empty())
                        || (key == "precision" && value.as_str() == Some("f32")) => {}
                    None => out.push((path, key.clone(), k.keys().cloned().collect())),
                }
            }
        }
        (Value::Array(g), Value::Array(k)) => {
            for (i, (gv, kv)) in g.iter().zip(k).enumerate() {
                unknown_keys(gv, kv, &format!("{prefix}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Reads a JSON config strictly ([`read_json_config`]) and runs its range checks; a failing check is
/// an error located at the line of the first failing key (when the file has it).
pub fn load_config<T: DeserializeOwned + Serialize>(
    path: &Path,
    what: &str,
    check: impl FnOnce(&T, &mut Checks),
) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let config = parse_json_config(&text, path, what)?;
    let mut checks = Checks::new(what);
    check(&config, &mut checks);
    if let Some((key, _)) = checks.problems.first() {
        let location = match key_lines(&text).remove(key) {
            Some(line) => Location::line(path, line),
            None => Location::file(path),
        };
        return Err(Error::data(location, checks.message()));
    }
    Ok(config)
}

/// The 1-based line of every key of a JSON text, by dotted path (`train.lr.peak_lr`,
/// `stages[1].batch_size`), as [`unknown_keys`] and [`Checks`] name them.
fn key_lines(text: &str) -> std::collections::HashMap<String, usize> {
    enum Frame {
        Object(Option<String>),
        Array(usize),
    }
    fn path(stack: &[Frame]) -> String {
        let mut out = String::new();
        for frame in stack {
            match frame {
                Frame::Object(Some(key)) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(key);
                }
                Frame::Object(None) => {}
                Frame::Array(i) => out.push_str(&format!("[{i}]")),
            }
        }
        out
    }
    let mut lines = std::collections::HashMap::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut line = 1;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\n' => line += 1,
            '"' => {
                let mut string = String::new();
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => string.extend(chars.next()),
                        c => string.push(c),
                    }
                }
                let mut ahead = chars.clone();
                while ahead.peek().is_some_and(|c| *c == ' ' || *c == '\t') {
                    ahead.next();
                }
                if ahead.peek() == Some(&':') {
                    if let Some(Frame::Object(key)) = stack.last_mut() {
                        *key = Some(string);
                        lines.entry(path(&stack)).or_insert(line);
                    }
                }
            }
            '{' => stack.push(Frame::Object(None)),
            '[' => stack.push(Frame::Array(0)),
            '}' | ']' => {
                stack.pop();
            }
            ',' => {
                if let Some(Frame::Array(i)) = stack.last_mut() {
                    *i += 1;
                }
            }
            _ => {}
        }
    }
    lines
}

/// The 1-based line of the first `"key":` in `text`.
fn key_line(text: &str, key: &str) -> Option<usize> {
    let quoted = format!("\"{key}\"");
    let mut from = 0;
    while let Some(pos) = text[from..].find(&quoted) {
        let at = from + pos;
        let after = text[at + quoted.len()..].trim_start();
        if after.starts_with(':') {
            return Some(text[..at].matches('\n').count() + 1);
        }
        from = at + quoted.len();
    }
    None
}

/// A serde error with the key it concerns: serde_json names the line and column but not the key of
/// a wrong value (`invalid value: integer `-1`, expected usize`), and lists but does not rank the
/// valid keys for an unknown one.
fn deserialize_error(text: &str, path: &Path, what: &str, e: &serde_json::Error) -> Error {
    let location = Location::line(path, e.line());
    let message = e.to_string();
    if let Some((key, valid)) = parse_unknown_field(&message) {
        // serde names the key alone; its path is the key of that name on the reported line.
        let key_path = key_lines(text)
            .into_iter()
            .find(|(p, l)| *l == e.line() && (p == &key || p.ends_with(&format!(".{key}"))))
            .map_or_else(|| key.clone(), |(p, _)| p);
        return Error::data(location, unknown_key_message(what, &key_path, &key, &valid));
    }
    if let Some(missing) = message.strip_prefix("missing field `").and_then(|r| r.split('`').next()) {
        // Usually a misspelt required key: point at the spelling that is there.
        let value: Value = serde_json::from_str(text).unwrap_or(Value::Null);
        let mut keys = Vec::new();
        all_keys(&value, &mut keys);
        let near = nearest(missing, keys.iter().map(String::as_str).filter(|k| *k != missing));
        let (location, hint) = match near {
            Some(k) => match key_line(text, k) {
                Some(l) => (Location::line(path, l), format!("; `{k}` here: did you mean `{missing}`?")),
                None => (location, format!("; the file has `{k}`: did you mean `{missing}`?")),
            },
            None => (location, String::new()),
        };
        return Error::data(location, format!("not a {what}: required key `{missing}` is missing{hint}"));
    }
    let detail = match key_before(text, e.line(), e.column()) {
        Some(key) => format!("key `{key}`: {message}"),
        None => message,
    };
    Error::data(location, format!("not a {what}: {detail}"))
}

/// Every object key in `value`, depth first.
fn all_keys(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                out.push(k.clone());
                all_keys(v, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| all_keys(v, out)),
        _ => {}
    }
}

/// `unknown field `x`, expected one of `a`, `b`` (serde's `deny_unknown_fields`) → (x, [a, b]).
fn parse_unknown_field(message: &str) -> Option<(String, Vec<String>)> {
    let rest = message.strip_prefix("unknown field `")?;
    let (key, rest) = rest.split_once('`')?;
    let expected = rest.split_once("expected ")?.1;
    let expected = expected.split(" at line").next().unwrap_or(expected);
    let valid = expected.split('`').skip(1).step_by(2).map(str::to_string).collect();
    Some((key.to_string(), valid))
}

/// The last `"key":` at or before (line, column), where serde_json reports a wrong value.
fn key_before(text: &str, line: usize, column: usize) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut upto: String = lines.get(line.checked_sub(1)?)?.chars().take(column).collect();
    // A value on its own line (an array item) belongs to the key on an earlier line.
    for back in (0..line.saturating_sub(1)).rev() {
        if upto.contains(':') {
            break;
        }
        upto = format!("{}\n{upto}", lines[back]);
    }
    let colon = upto.rfind(':')?;
    let before = upto[..colon].trim_end().strip_suffix('"')?;
    let start = before.rfind('"')?;
    Some(before[start + 1..].to_string())
}

/// Levenshtein distance in characters.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

/// The candidate closest to `word` by edit distance, if it is close enough to be a likely typo (at
/// most a third of the longer word's letters differ, or one is a prefix of the other); ties go to
/// the first candidate.
pub fn nearest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let d = edit_distance(word, c);
        if best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    let (d, c) = best?;
    let longest = word.chars().count().max(c.chars().count());
    let prefix = !word.is_empty() && (c.starts_with(word) || word.starts_with(c));
    (d * 3 <= longest || prefix).then_some(c)
}

/// Range checks on a config's values, collecting the first violation with its key path.
///
/// ```
/// # use protein_lm::config::Checks;
/// let mut c = Checks::new("fine-tuning config");
/// c.at_least("batch_size", 0, 1);
/// assert!(c.finish().unwrap_err().to_string().contains("`batch_size` must be at least 1"));
/// ```
pub struct Checks {
    what: String,
    /// (key, message naming it), in the order found.
    problems: Vec<(String, String)>,
}

impl Checks {
    pub fn new(what: &str) -> Self {
        Self { what: what.to_string(), problems: Vec::new() }
    }

    pub fn fail(&mut self, key: &str, message: impl std::fmt::Display) {
        self.problems.push((key.to_string(), format!("`{key}` {message}")));
    }

    pub fn at_least<N: PartialOrd + std::fmt::Display + Copy>(&mut self, key: &str, value: N, min: N) {
        if value < min {
            self.fail(key, format_args!("must be at least {min}, not {value}"));
        }
    }

    /// A finite number in `[lo, hi]` (or `(lo, hi]`, `[lo, hi)` with the open ends given).
    pub fn within(&mut self, key: &str, value: f64, lo: f64, hi: f64, open_lo: bool, open_hi: bool) {
        let ok = value.is_finite()
            && if open_lo { value > lo } else { value >= lo }
            && if open_hi { value < hi } else { value <= hi };
        if !ok {
            let (l, h) = (if open_lo { "(" } else { "[" }, if open_hi { ")" } else { "]" });
            self.fail(key, format_args!("must be in {l}{lo}, {hi}{h}, not {value}"));
        }
    }

    /// A finite number above zero.
    pub fn positive(&mut self, key: &str, value: f64) {
        if !(value.is_finite() && value > 0.0) {
            self.fail(key, format_args!("must be a positive number, not {value}"));
        }
    }

    /// A finite number, zero or more.
    pub fn non_negative(&mut self, key: &str, value: f64) {
        if !(value.is_finite() && value >= 0.0) {
            self.fail(key, format_args!("must be zero or more, not {value}"));
        }
    }

    fn message(&self) -> String {
        let problems: Vec<&str> = self.problems.iter().map(|(_, m)| m.as_str()).collect();
        format!("{}: {}", self.what, problems.join("; "))
    }

    pub fn finish(self) -> Result<()> {
        match self.problems.is_empty() {
            true => Ok(()),
            false => Err(Error::invalid(self.message())),
        }
    }
}

/// Range checks of the training loop's settings, under `prefix` (`train`, `stages[0].train`).
pub fn check_train(c: &mut Checks, prefix: &str, t: &crate::train::trainer::TrainConfig) {
    use crate::train::trainer::{LrSchedule, OptimizerConfig};
    let key = |k: &str| format!("{prefix}.{k}");
    c.at_least(&key("max_updates"), t.max_updates, 1);
    if let Some(e) = t.max_epochs {
        c.at_least(&key("max_epochs"), e, 1);
    }
    c.at_least(&key("update_freq"), t.update_freq, 1);
    c.at_least(&key("checkpoint_every"), t.checkpoint_every, 1);
    c.at_least(&key("keep_checkpoints"), t.keep_checkpoints, 1);
    c.at_least(&key("log_every"), t.log_every, 1);
    if let Some(n) = t.clip_norm {
        c.positive(&key("clip_norm"), n);
    }
    for (k, v) in
        [("validate_every_updates", t.validate_every_updates), ("validate_every_epochs", t.validate_every_epochs)]
    {
        if let Some(v) = v {
            c.at_least(&key(k), v, 1);
        }
    }
    match &t.lr {
        LrSchedule::Constant { lr } => c.non_negative(&key("lr.lr"), *lr),
        LrSchedule::Polynomial(p) => {
            c.non_negative(&key("lr.peak_lr"), p.peak_lr);
            c.non_negative(&key("lr.end_lr"), p.end_lr);
            c.positive(&key("lr.power"), p.power);
            if p.total_updates <= p.warmup_updates {
                c.fail(&key("lr.total_updates"), format_args!("must exceed lr.warmup_updates ({})", p.warmup_updates));
            }
        }
    }
    let (beta1, beta2, eps, weight_decay) = match t.optimizer {
        OptimizerConfig::LambApex { beta1, beta2, eps, weight_decay, .. }
        | OptimizerConfig::LambTfa { beta1, beta2, eps, weight_decay }
        | OptimizerConfig::AdamW { beta1, beta2, eps, weight_decay } => (beta1, beta2, eps, weight_decay),
        OptimizerConfig::AdamKeras { beta1, beta2, eps } => (beta1, beta2, eps, 0.0),
    };
    c.within(&key("optimizer.beta1"), beta1, 0.0, 1.0, false, true);
    c.within(&key("optimizer.beta2"), beta2, 0.0, 1.0, false, true);
    c.positive(&key("optimizer.eps"), eps);
    c.non_negative(&key("optimizer.weight_decay"), weight_decay);
    if let Some(p) = &t.plateau {
        c.within(&key("plateau.factor"), p.factor, 0.0, 1.0, true, true);
        c.non_negative(&key("plateau.min_lr"), p.min_lr);
    }
    if let Some(s) = &t.loss_scale {
        if t.precision != crate::train::precision::Precision::F16 {
            c.fail(&key("loss_scale"), "is for precision f16 (bf16 and f32 need no loss scaling)");
        }
        c.positive(&key("loss_scale.init_scale"), s.init_scale);
        c.positive(&key("loss_scale.min_scale"), s.min_scale);
        c.at_least(&key("loss_scale.growth_interval"), s.growth_interval, 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Serialize, serde::Deserialize)]
    struct Inner {
        max_updates: u64,
        #[serde(default)]
        clip_norm: Option<f64>,
    }

    #[derive(Debug, serde::Serialize, serde::Deserialize)]
    struct Outer {
        batch_size: usize,
        train: Inner,
    }

    fn parse(text: &str) -> Result<Outer> {
        parse_json_config(text, Path::new("c.json"), "test config")
    }

    #[test]
    fn edit_distance_and_nearest() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("max_update", "max_updates"), 1);
        let keys = ["max_updates", "max_epochs", "log_every"];
        assert_eq!(nearest("max_update", keys), Some("max_updates"));
        assert_eq!(nearest("max_epoch", keys), Some("max_epochs"));
        assert_eq!(nearest("zzzzzzzz", keys), None);
    }

    #[test]
    fn nested_unknown_key_names_line_path_and_nearest() {
        let text = "{\n  \"batch_size\": 4,\n  \"train\": {\n    \"max_updates\": 3,\n    \"clip_norms\": 1.0\n  }\n}";
        let e = parse(text).unwrap_err().to_string();
        assert!(e.starts_with("c.json:5: unknown key `train.clip_norms`"), "{e}");
        assert!(e.contains("did you mean `clip_norm`?"), "{e}");
        let text = "{\"batch_sise\": 4, \"train\": {\"max_updates\": 3}}";
        let e = parse(text).unwrap_err().to_string();
        assert!(e.contains("`batch_sise`") && e.contains("did you mean `batch_size`?"), "{e}");
    }

    #[test]
    fn misspelt_required_key_points_at_the_spelling_found() {
        let text = "{\n  \"batch_size\": 4,\n  \"train\": {\n    \"max_update\": 3\n  }\n}";
        let e = parse(text).unwrap_err().to_string();
        assert!(e.starts_with("c.json:4: not a test config: required key `max_updates` is missing"), "{e}");
        assert!(e.contains("`max_update` here: did you mean `max_updates`?"), "{e}");
    }

    #[test]
    fn unknown_null_key_passes_and_known_keys_parse() {
        let c = parse("{\"batch_size\": 4, \"train\": {\"max_updates\": 3, \"clip_norm\": null}}").unwrap();
        assert_eq!((c.batch_size, c.train.max_updates, c.train.clip_norm), (4, 3, None));
    }

    #[test]
    fn lr_scales_read_when_given_and_an_empty_list_is_the_default() {
        use crate::train::trainer::TrainConfig;
        let base = serde_json::to_value(TrainConfig::epochs(2, 1e-3)).unwrap();
        assert!(base.get("lr_scales").is_none(), "left out when empty, so earlier runs resume");
        for (scales, expected) in
            [(serde_json::json!([]), 0), (serde_json::json!([{"prefix": "head.", "factor": 10.0}]), 1)]
        {
            let mut v = base.clone();
            v["lr_scales"] = scales;
            let c: TrainConfig = parse_json_config(&v.to_string(), Path::new("t.json"), "training config").unwrap();
            assert_eq!(c.lr_scales.len(), expected);
        }
    }

    #[test]
    fn precision_read_when_given_and_f32_left_out_so_earlier_runs_resume() {
        use crate::train::precision::Precision;
        use crate::train::trainer::TrainConfig;
        let base = serde_json::to_value(TrainConfig::epochs(2, 1e-3)).unwrap();
        assert!(base.get("precision").is_none() && base.get("loss_scale").is_none());
        let read = |v: &serde_json::Value| -> Result<TrainConfig> {
            parse_json_config(&v.to_string(), Path::new("t.json"), "training config")
        };
        for (given, expected) in [("f32", Precision::F32), ("bf16", Precision::Bf16), ("f16", Precision::F16)] {
            let mut v = base.clone();
            v["precision"] = given.into();
            assert_eq!(read(&v).unwrap().precision, expected, "{given}");
        }
        let mut v = base.clone();
        v["precision"] = "fp8".into();
        assert!(read(&v).unwrap_err().to_string().contains("precision"));
        // Loss scaling belongs to f16: elsewhere it is an error naming the key.
        v["precision"] = "bf16".into();
        v["loss_scale"] = serde_json::json!({"growth_interval": 10});
        let config = read(&v).unwrap();
        let mut checks = Checks::new("training config");
        check_train(&mut checks, "train", &config);
        assert!(checks.message().contains("train.loss_scale"), "{}", checks.message());
        assert!(config.validate().is_err());
        v["precision"] = "f16".into();
        let config = read(&v).unwrap();
        assert_eq!(config.loss_scale.as_ref().unwrap().growth_interval, 10);
        config.validate().unwrap();
    }

    /// The strict reading must accept every shipped config (no key reported unknown by mistake,
    /// e.g. through a flattened or tagged section) and every shipped value must pass its checks.
    #[test]
    fn every_shipped_config_loads() {
        use crate::train::finetune::proberta::ProbertaFinetuneConfig;
        use crate::train::finetune::{FinetuneConfig, PpiFinetuneConfig};
        use crate::train::pretrain::PretrainConfig;
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let loaded = if name.contains("-pretrain-") {
                PretrainConfig::load(&path).map(drop)
            } else if name.starts_with("proberta-finetune-") {
                ProbertaFinetuneConfig::load(&path).map(drop)
            } else if name.starts_with("proteinbert-finetune-ppi-") {
                PpiFinetuneConfig::load(&path).map(drop)
            } else if name.starts_with("proteinbert-finetune-") {
                FinetuneConfig::load(&path).map(drop)
            } else {
                panic!("{name}: which config type?")
            };
            loaded.unwrap_or_else(|e| panic!("{e}"));
            n += 1;
        }
        assert_eq!(n, 15);
    }

    #[test]
    fn key_lines_follow_nesting_and_arrays() {
        let text =
            "{\n \"a\": 1,\n \"s\": [\n  {\"b\": 2},\n  {\"b\": 3,\n   \"c\": {\"d\": \"x:\\\"y\"}}\n ],\n \"b\": 4\n}";
        let lines = key_lines(text);
        let get = |k: &str| lines.get(k).copied();
        assert_eq!(get("a"), Some(2));
        assert_eq!(get("s"), Some(3));
        assert_eq!(get("s[0].b"), Some(4));
        assert_eq!(get("s[1].b"), Some(5));
        assert_eq!(get("s[1].c.d"), Some(6));
        assert_eq!(get("b"), Some(8));
        assert_eq!(get("s[1].c"), Some(6));
        assert_eq!(lines.len(), 7);
    }

    #[test]
    fn range_check_failures_are_located_at_their_key() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("c.json");
        std::fs::write(&path, "{\n  \"batch_size\": 4,\n  \"train\": {\n    \"max_updates\": 0\n  }\n}").unwrap();
        let e = load_config(&path, "test config", |c: &Outer, checks| {
            checks.at_least("batch_size", c.batch_size, 1);
            checks.at_least("train.max_updates", c.train.max_updates, 1);
        })
        .unwrap_err()
        .to_string();
        assert!(e.ends_with("c.json:4: test config: `train.max_updates` must be at least 1, not 0"), "{e}");
    }

    #[test]
    fn wrong_value_names_its_key() {
        let text = "{\n  \"batch_size\": -1,\n  \"train\": {\"max_updates\": 3}\n}";
        let e = parse(text).unwrap_err().to_string();
        assert!(e.contains("c.json:2") && e.contains("key `batch_size`") && e.contains("-1"), "{e}");
    }

    #[test]
    fn serde_deny_unknown_fields_gets_a_suggestion() {
        let msg = "unknown field `d_globl`, expected one of `d_local`, `d_global` at line 3 column 9";
        let (key, valid) = parse_unknown_field(msg).unwrap();
        assert_eq!((key.as_str(), valid), ("d_globl", vec!["d_local".to_string(), "d_global".to_string()]));
    }

    #[test]
    fn checks_name_keys() {
        let mut c = Checks::new("cfg");
        c.within("valid_fraction", 1.5, 0.0, 1.0, false, true);
        c.positive("negative_ratio", f64::NAN);
        c.at_least("batch_size", 0usize, 1);
        let e = c.finish().unwrap_err().to_string();
        assert!(e.contains("`valid_fraction` must be in [0, 1), not 1.5"), "{e}");
        assert!(e.contains("`negative_ratio` must be a positive number, not NaN"), "{e}");
        assert!(e.contains("`batch_size` must be at least 1, not 0"), "{e}");
    }
}
