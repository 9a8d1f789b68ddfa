//! Every command line the README, docs/ and `.ci/run` show is accepted by the binary it
//! names: `zerolost …` by the operator command's parser, `zerolost-lab …` by the lab
//! binary (its arguments, then `--help`, which stops before running anything).

use std::path::{Path, PathBuf};
use std::process::Command;

use clap::Parser;
use zerolost_cli::cli::Cli;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// (where, command line) of every `zerolost`, `zerolost-lab` or `cargo run -p …` line in
/// the fenced code blocks of the README and docs/, and every line of `.ci/run`. In a block
/// with `$ ` prompts only the prompted lines are commands; `\` continues a line.
fn documented_lines() -> Vec<(String, String)> {
    let mut sources: Vec<PathBuf> = vec![root().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("docs/")
        .map(|e| e.expect("docs entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    sources.extend(docs);
    let mut lines = Vec::new();
    for path in &sources {
        let text = std::fs::read_to_string(path).expect("read doc");
        for (n, block) in code_blocks(&text) {
            let prompted = block.iter().any(|l| l.trim_start().starts_with("$ "));
            for (k, line) in joined(&block) {
                let line = line.trim();
                let command = match line.strip_prefix("$ ") {
                    Some(command) => command,
                    None if prompted => continue,
                    None => line,
                };
                lines.push((format!("{}:{}", path.display(), n + k), command.to_owned()));
            }
        }
    }
    let ci = std::fs::read_to_string(root().join(".ci/run")).expect(".ci/run");
    let ci_lines: Vec<&str> = ci.lines().collect();
    for (k, line) in joined(&ci_lines) {
        lines.push((format!(".ci/run:{}", k + 1), line));
    }
    lines.retain(|(_, l)| binary_and_args(l).is_some());
    lines
}

/// The fenced code blocks of a Markdown text: (line before the first line, its lines).
fn code_blocks(text: &str) -> Vec<(usize, Vec<&str>)> {
    let mut blocks = Vec::new();
    let mut open: Option<(usize, Vec<&str>)> = None;
    for (n, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            match open.take() {
                Some(block) => blocks.push(block),
                None => open = Some((n + 1, Vec::new())),
            }
        } else if let Some((_, lines)) = open.as_mut() {
            lines.push(line);
        }
    }
    blocks
}

/// Lines with `\` continuations joined: (index of the first line, text).
fn joined(lines: &[&str]) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (k, line) in lines.iter().enumerate() {
        let (start, mut text) = current.take().unwrap_or((k, String::new()));
        let trimmed = line.trim_end();
        match trimmed.strip_suffix('\\') {
            Some(head) => {
                text.push_str(head);
                text.push(' ');
                current = Some((start, text));
            }
            None => {
                text.push_str(trimmed);
                out.push((start, text));
            }
        }
    }
    out
}

/// Which binary a line runs and its arguments, without comments, pipes and `&`.
fn binary_and_args(line: &str) -> Option<(&'static str, Vec<String>)> {
    let line = line.split(" # ").next().unwrap_or(line);
    let line = line.split(" | ").next().unwrap_or(line);
    let line = line.trim().trim_end_matches('&').trim();
    let words = shell_words(line);
    let (first, rest) = words.split_first()?;
    let binary = match first.as_str() {
        "zerolost" | "./target/release/zerolost" | "./target/ci/zerolost" => "zerolost",
        "zerolost-lab" | "./target/release/zerolost-lab" | "./target/ci/zerolost-lab" => {
            "zerolost-lab"
        }
        "cargo" if rest.first().is_some_and(|w| w == "run") => {
            let package = rest.iter().position(|w| w == "-p").map(|i| &rest[i + 1])?;
            let args = rest.iter().position(|w| w == "--")?;
            let binary = match package.as_str() {
                "zerolost-lab" => "zerolost-lab",
                "zerolost-cli" => "zerolost",
                _ => return None,
            };
            return Some((binary, rest[args + 1..].to_vec()));
        }
        _ => return None,
    };
    Some((binary, rest.to_vec()))
}

/// Whitespace-separated words; double quotes group.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// Whether this build of the lab has the command (`bench` and `chaos` are features).
fn lab_has(args: &[String]) -> bool {
    match args.first().map(String::as_str) {
        Some("bench") => cfg!(feature = "bench"),
        Some("chaos") => cfg!(feature = "chaos"),
        _ => true,
    }
}

#[test]
fn every_documented_command_line_is_accepted() {
    let lines = documented_lines();
    assert!(
        lines.len() >= 30,
        "the README, docs/ and .ci/run show at least 30 command lines, found {}",
        lines.len()
    );
    let mut refused = Vec::new();
    let mut checked = 0;
    for (place, line) in &lines {
        let Some((binary, args)) = binary_and_args(line) else {
            continue;
        };
        let accepted = if binary == "zerolost" {
            let argv = std::iter::once("zerolost".to_owned()).chain(args.iter().cloned());
            Cli::try_parse_from(argv)
                .map(|_| ())
                .map_err(|e| e.to_string())
        } else if lab_has(&args) {
            let out = Command::new(env!("CARGO_BIN_EXE_zerolost-lab"))
                .args(&args)
                .arg("--help")
                .output()
                .expect("run zerolost-lab");
            if out.status.success() {
                Ok(())
            } else {
                Err(String::from_utf8_lossy(&out.stderr).into_owned())
            }
        } else {
            continue;
        };
        checked += 1;
        if let Err(e) = accepted {
            refused.push(format!("{place}: {line}\n    {}", e.trim()));
        }
    }
    // Without `bench` and `chaos` their lines are skipped.
    let least = if cfg!(all(feature = "bench", feature = "chaos")) {
        20
    } else {
        15
    };
    assert!(checked >= least, "checked {checked} lines");
    assert!(refused.is_empty(), "refused:\n{}", refused.join("\n"));
}

#[test]
fn a_wrong_option_is_caught() {
    // The check itself can fail: a line with an option no command has is refused.
    let argv = ["zerolost", "outbox", "stats", "--no-such-option"];
    assert!(Cli::try_parse_from(argv).is_err());
    let out = Command::new(env!("CARGO_BIN_EXE_zerolost-lab"))
        .args(["demo", "--no-such-option", "--help"])
        .output()
        .expect("run zerolost-lab");
    assert!(!out.status.success());
}
