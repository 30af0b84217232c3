//! The docs point at the code: every repository path a page names in backticks (`media/src/live.rs`,
//! `cdn-edge/src/`) exists, and every relative link between README.md and the pages under docs/
//! reaches an existing file (and heading, when it names one). docs/architecture.md is the map a newcomer
//! follows file by file, so a rename that leaves it behind fails here instead of misleading them.
//!
//! Std only and no processes: it reads markdown and stats files.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// Places the docs name that a build, a test, a local run or `npm ci` creates: not in a fresh clone.
const GENERATED: &[&str] = &[
    "target/",
    ".tmp/",
    "web/node_modules/",
    "e2e/browser/node_modules/",
];

/// Pages linked before they land, written on another branch; remove an entry once its page is in.
const PENDING_PAGES: &[&str] = &[];

/// MIME types (`application/vnd.apple.mpegurl`) look like paths; their first part gives them away.
const MIME_TOPS: &[&str] = &["application", "audio", "image", "text", "video"];

/// README.md and every page under docs/, in a stable order.
fn pages(root: &Path) -> Vec<PathBuf> {
    let mut pages = vec![root.join("README.md")];
    let mut docs: Vec<PathBuf> = fs::read_dir(root.join("docs"))
        .map(|dir| {
            dir.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "md"))
                .collect()
        })
        .unwrap_or_default();
    docs.sort();
    pages.extend(docs);
    pages
}

/// The lines of a page outside fenced code blocks (commands and sample output, not references).
fn prose(text: &str) -> Vec<&str> {
    let mut fenced = false;
    text.lines()
        .filter(|line| {
            if line.trim_start().starts_with("```") {
                fenced = !fenced;
                return false;
            }
            !fenced
        })
        .collect()
}

/// The inline code spans of a line: text between pairs of single backticks.
fn code_spans(line: &str) -> Vec<&str> {
    line.split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s)
        .collect()
}

/// Whether a code span names a file or directory of this repository: a relative path of plain
/// characters with a `/`, ending in `/` (a directory) or in a file name with an extension.
fn looks_like_repo_path(s: &str) -> bool {
    let plain = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'));
    if !plain || !s.contains('/') || s.starts_with('/') || s.contains("//") || s.contains("..") {
        return false;
    }
    let top = s.split('/').next().unwrap_or_default();
    if MIME_TOPS.contains(&top) {
        return false;
    }
    if s.ends_with('/') {
        return true;
    }
    let name = s.rsplit('/').next().unwrap_or_default();
    match name.rsplit_once('.') {
        Some((stem, ext)) => {
            !stem.is_empty()
                && (1..=10).contains(&ext.len())
                && ext.chars().all(|c| c.is_ascii_alphanumeric())
        }
        None => false,
    }
}

/// Relative link targets of a line: `](target)` that is not a URL.
fn relative_links(line: &str) -> Vec<&str> {
    line.match_indices("](")
        .filter_map(|(i, _)| {
            let rest = &line[i + 2..];
            rest.find(')').map(|end| &rest[..end])
        })
        .filter(|t| !t.contains("://") && !t.starts_with("mailto:"))
        .collect()
}

/// GitHub's anchor for a heading: lower case, spaces to `-`, punctuation other than `-` and `_` dropped.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors a page's headings make.
fn anchors(text: &str) -> BTreeSet<String> {
    prose(text)
        .into_iter()
        .filter(|l| l.starts_with('#'))
        .map(|l| slug(l.trim_start_matches('#')))
        .collect()
}

fn shown(root: &Path, page: &Path) -> String {
    page.strip_prefix(root)
        .unwrap_or(page)
        .display()
        .to_string()
}

#[test]
fn every_path_the_docs_name_exists() {
    let root = e2e::workspace_root();
    let mut missing = Vec::new();
    let mut checked = 0;
    for page in pages(&root) {
        let text = fs::read_to_string(&page).unwrap_or_default();
        for (n, line) in prose(&text).into_iter().enumerate() {
            for span in code_spans(line) {
                if !looks_like_repo_path(span) || GENERATED.iter().any(|g| span.starts_with(g)) {
                    continue;
                }
                checked += 1;
                if !root.join(span).exists() {
                    missing.push(format!(
                        "{}: `{span}` (prose line {})",
                        shown(&root, &page),
                        n + 1
                    ));
                }
            }
        }
    }
    assert!(
        checked >= 50,
        "only {checked} paths found: is docs/architecture.md there?"
    );
    assert!(
        missing.is_empty(),
        "paths named in the docs that do not exist:\n{}",
        missing.join("\n")
    );
}

#[test]
fn every_link_between_the_pages_resolves() {
    let root = e2e::workspace_root();
    let mut broken = Vec::new();
    for page in pages(&root) {
        let text = fs::read_to_string(&page).unwrap_or_default();
        let dir = page.parent().unwrap_or(root.as_path()).to_path_buf();
        for line in prose(&text) {
            for link in relative_links(line) {
                let (file, anchor) = link.split_once('#').unwrap_or((link, ""));
                let target = if file.is_empty() {
                    page.clone()
                } else {
                    dir.join(file)
                };
                let pending = PENDING_PAGES
                    .iter()
                    .any(|p| target == root.join(p) || target == dir.join(p));
                if !target.exists() {
                    if !pending {
                        broken.push(format!("{}: ({link}): no such file", shown(&root, &page)));
                    }
                    continue;
                }
                if anchor.is_empty() || target.extension().is_none_or(|x| x != "md") {
                    continue;
                }
                let target_text = fs::read_to_string(&target).unwrap_or_default();
                if !anchors(&target_text).contains(anchor) {
                    broken.push(format!(
                        "{}: ({link}): no such heading",
                        shown(&root, &page)
                    ));
                }
            }
        }
    }
    assert!(
        broken.is_empty(),
        "links that lead nowhere:\n{}",
        broken.join("\n")
    );
}

#[test]
fn the_path_rule_tells_files_from_other_slashes() {
    for path in [
        "media/src/live.rs",
        "cdn-edge/src/",
        "scripts/kafka/live-topic.properties",
        "e2e/browser/",
    ] {
        assert!(looks_like_repo_path(path), "{path}");
    }
    for other in [
        "/live/{stream}/index.m3u8",
        "application/vnd.apple.mpegurl",
        "rtmp://HOST:1935/live",
        "live/<stream>",
        "a/b",
        "../../etc/passwd",
        "~/.cache/live-video",
        "e2e/tests/faults.rs::broker_outage_loses_no_segment",
    ] {
        assert!(!looks_like_repo_path(other), "{other}");
    }
    assert_eq!(
        slug("Kafka settings that matter"),
        "kafka-settings-that-matter"
    );
    assert_eq!(slug("Low-latency HLS (LL-HLS)"), "low-latency-hls-ll-hls");
    assert_eq!(slug("`media`: the origin"), "media-the-origin");
}
