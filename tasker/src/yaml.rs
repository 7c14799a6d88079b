//! Reading the YAML files of the configuration directories (templates, events, subscriptions):
//! bounded in size, typed with the key at fault named, and mappings that refuse a key written
//! twice.
//!
//! serde_norway bounds what a document can cost once read: nesting deeper than 128 levels fails
//! with `recursion limit exceeded`, and alias expansion ("billion laughs") with `repetition limit
//! exceeded`. [`MAX_FILE_BYTES`] bounds the rest.

use std::collections::HashSet;
use std::fmt;
use std::fs;
use std::io::Read;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserialize, DeserializeOwned, Deserializer, MapAccess, Visitor};

/// Largest YAML file read, in bytes (1 MiB): a template, an events or a subscriptions file.
pub(crate) const MAX_FILE_BYTES: usize = 1024 * 1024;

/// The text of the YAML file at `path`, or why it cannot be had: unreadable, over
/// [`MAX_FILE_BYTES`], or not UTF-8.
pub(crate) fn read_file(path: &Path) -> Result<String, String> {
    let bytes = read_bounded(path).map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() > MAX_FILE_BYTES {
        return Err(format!(
            "file is over the maximum size of {MAX_FILE_BYTES} bytes"
        ));
    }
    String::from_utf8(bytes).map_err(|e| format!("file is not UTF-8: {e}"))
}

/// Reads at most one byte more than [`MAX_FILE_BYTES`], so a huge file is refused cheaply.
fn read_bounded(path: &Path) -> std::io::Result<Vec<u8>> {
    let file = fs::File::open(path)?;
    let limit = u64::try_from(MAX_FILE_BYTES).map_or(u64::MAX, |n| n.saturating_add(1));
    let mut bytes = Vec::new();
    file.take(limit).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// The `*.yaml` and `*.yml` files directly in `dir`, in file-name order.
pub(crate) fn files_in(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let is_yaml = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml"));
        if is_yaml && path.is_file() {
            files.push(path);
        }
    }
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(files)
}

/// The YAML files of each directory of a `*_directories` setting, in order; the problems name
/// a directory that cannot be read. A missing directory is an error unless it is `default`,
/// which an application that uses no such files does not create.
pub(crate) fn files_of(
    dirs: &[PathBuf],
    default: &str,
    setting: &str,
) -> (Vec<PathBuf>, Vec<crate::FileProblem>) {
    let mut files = Vec::new();
    let mut problems = Vec::new();
    for dir in dirs {
        match files_in(dir) {
            Ok(found) => files.extend(found),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && dir == Path::new(default) => {}
            Err(e) => problems.push(crate::FileProblem::new(
                dir,
                None,
                format!("cannot read this directory of `{setting}`: {e}"),
            )),
        }
    }
    (files, problems)
}

/// Deserialises `text` as a `T`; an error gives the dotted key at fault (`None` for the
/// document itself) and what is wrong.
pub(crate) fn parse<T: DeserializeOwned>(text: &str) -> Result<T, (Option<String>, String)> {
    serde_path_to_error::deserialize(serde_norway::Deserializer::from_str(text)).map_err(|error| {
        // serde_path_to_error writes the document itself as `.`, and a part it could not tell
        // (inside a syntax error) as `?`.
        let segments: Vec<String> = error
            .path()
            .iter()
            .map(ToString::to_string)
            .filter(|s| s != "?")
            .collect();
        let key = (!segments.is_empty()).then(|| segments.join("."));
        let message = error.into_inner().to_string();
        // The caller reports the key on its own.
        (key, split_path(&message).1.to_owned())
    })
}

/// Splits serde_norway's `path: message` (`step_templates[1].handler: unknown field …`) when
/// the text starts with a key path.
pub(crate) fn split_path(text: &str) -> (Option<&str>, &str) {
    match text.split_once(": ") {
        Some((path, message))
            if !path.is_empty()
                && path
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.[]?".contains(c)) =>
        {
            (Some(path), message)
        }
        _ => (None, text),
    }
}

/// A YAML mapping as its entries in document order, refusing a key written twice (a typed map
/// would keep the last of the two without a word). An empty value reads as no entries.
#[derive(Debug)]
pub(crate) struct Entries<V>(pub(crate) Vec<(String, V)>);

impl<V> Default for Entries<V> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Entries<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntriesVisitor<V>(PhantomData<V>);

        impl<'de, V: Deserialize<'de>> Visitor<'de> for EntriesVisitor<V> {
            type Value = Entries<V>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping")
            }

            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Entries(Vec::new()))
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut seen = HashSet::new();
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    if !seen.insert(key.clone()) {
                        return Err(de::Error::custom(format!("duplicate key `{key}`")));
                    }
                    entries.push((key, map.next_value()?));
                }
                Ok(Entries(entries))
            }
        }

        deserializer.deserialize_map(EntriesVisitor(PhantomData))
    }
}
