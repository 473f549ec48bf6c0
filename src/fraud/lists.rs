//! Lists in policies/lists/: sanctioned names and account ids, one list per file. Names match after
//! normalization: case, diacritics, punctuation and word order do not matter ("Müller, Hans" is
//! "hans MULLER").

use std::collections::HashSet;
use std::path::Path;

use serde::Deserialize;
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListKind {
    Names,
    Accounts,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListFile {
    kind: ListKind,
    description: String,
    entries: Vec<String>,
}

/// One list: its entries, normalized for matching.
#[derive(Clone, Debug)]
pub struct List {
    pub kind: ListKind,
    pub description: String,
    entries: HashSet<String>,
}

impl List {
    pub fn contains(&self, value: &str) -> bool {
        match self.kind {
            ListKind::Names => self.entries.contains(&normalize_name(value)),
            ListKind::Accounts => self.entries.contains(&value.trim().to_ascii_lowercase()),
        }
    }
}

/// Lower case, without diacritics, punctuation or repeated spaces, words sorted. Letters that carry
/// their stroke or ligature in the letter itself (ł, ø, đ, ß, æ, œ, þ, ı) are spelled out, as
/// decomposition leaves them alone.
pub fn normalize_name(name: &str) -> String {
    let folded: String = name
        .nfkd()
        .filter(|c| !is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .flat_map(|c| {
            let spelled = match c {
                'ł' => "l",
                'ø' => "o",
                'đ' | 'ð' => "d",
                'ß' => "ss",
                'æ' => "ae",
                'œ' => "oe",
                'þ' => "th",
                'ı' => "i",
                c if c.is_alphanumeric() => return vec![c],
                _ => " ",
            };
            spelled.chars().collect()
        })
        .collect();
    let mut words: Vec<&str> = folded.split_whitespace().collect();
    words.sort_unstable();
    words.join(" ")
}

/// Parses one list file.
pub fn parse(text: &str) -> Result<List, String> {
    let file: ListFile = toml::from_str(text).map_err(|e| e.to_string())?;
    if file.kind == ListKind::Accounts
        && let Some(bad) = file.entries.iter().find(|e| uuid::Uuid::parse_str(e.trim()).is_err())
    {
        return Err(format!("`{bad}` is not an account id (UUID)"));
    }
    let entries = file
        .entries
        .iter()
        .map(|entry| match file.kind {
            ListKind::Names => normalize_name(entry),
            ListKind::Accounts => entry.trim().to_ascii_lowercase(),
        })
        .filter(|entry| !entry.is_empty())
        .collect();
    Ok(List {
        kind: file.kind,
        description: file.description,
        entries,
    })
}

/// The text of every `*.toml` file of `dir`, named `lists/<file name>`.
pub fn load(dir: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let mut texts = Vec::new();
    if !dir.exists() {
        return Ok(texts);
    }
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|e| e == "toml"))
        .collect();
    paths.sort();
    for path in paths {
        let text = std::fs::read_to_string(&path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let name = path.file_name().and_then(|s| s.to_str()).unwrap_or_default();
        texts.push((format!("lists/{name}"), text));
    }
    Ok(texts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_whatever_the_case_accents_punctuation_and_word_order() {
        assert_eq!(normalize_name("Müller, Hans"), normalize_name("hans MULLER"));
        assert_eq!(normalize_name("  José-María  Núñez "), "jose maria nunez");
        assert_eq!(normalize_name("O'Brien"), normalize_name("brien o"));
        assert_eq!(normalize_name("Łukasz Øster Straße"), "lukasz oster strasse");
        assert_ne!(normalize_name("Hans Müller"), normalize_name("Hans Mueller-Schmidt"));
    }
}
