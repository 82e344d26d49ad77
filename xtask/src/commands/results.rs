//! `cargo xtask results`: copies each suite's table (docs/results/SUITE/summary.md, written by
//! `experiment`) into docs/results.md and README.md between the markers `<!-- table SUITE -->` and
//! `<!-- end table -->`, so that the page shows what the command measured, never a hand edit.
//! `<!-- table SUITE/NAME -->` copies the suite's NAME.md instead (the continual suite's
//! finetuning tables are `continual/continual`).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// Arguments of `cargo xtask results`.
#[derive(clap::Args)]
pub struct ResultsArgs {
    /// The pages to update (repeatable).
    #[arg(long = "doc", default_values = ["docs/results.md", "README.md"])]
    docs: Vec<PathBuf>,
    /// The folder of the suites' directories.
    #[arg(long, default_value = "docs/results")]
    suites: PathBuf,
}

const OPEN: &str = "<!-- table ";
const CLOSE: &str = "<!-- end table -->";

/// The table of `suite`'s summary.md, or of `NAME.md` for `suite/NAME` (everything after its
/// title line), or `None` when the suite has not been run into `suites`.
fn table(suites: &Path, suite: &str) -> anyhow::Result<Option<String>> {
    let path = match suite.split_once('/') {
        Some((dir, name)) => suites.join(dir).join(format!("{name}.md")),
        None => suites.join(suite).join("summary.md"),
    };
    if !path.exists() {
        return Ok(None);
    }
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(Some(
        text.lines()
            .skip_while(|line| line.starts_with('#') || line.trim().is_empty())
            .collect::<Vec<_>>()
            .join("\n"),
    ))
}

/// `page` with every marked table replaced by its suite's current one (a suite not run yet
/// keeps what the page has), and the suites that were missing.
fn splice(page: &str, suites: &Path) -> anyhow::Result<(String, Vec<String>)> {
    let (mut out, mut missing) = (String::new(), Vec::new());
    let mut rest = page;
    while let Some(at) = rest.find(OPEN) {
        let (before, marked) = rest.split_at(at);
        let Some(name_end) = marked.find("-->") else {
            bail!("a `{OPEN}` marker without its `-->`");
        };
        let suite = marked[OPEN.len()..name_end].trim();
        let end = marked.find(CLOSE).filter(|&end| {
            // The close must be this table's, not the next one's.
            !marked[name_end..end].contains(OPEN)
        });
        let Some(end) = end else {
            bail!("the table of {suite} has no `{CLOSE}` before the next table");
        };
        out.push_str(before);
        match table(suites, suite)? {
            Some(table) => {
                out.push_str(&marked[..name_end + 3]);
                out.push('\n');
                out.push_str(&table);
                out.push('\n');
                out.push_str(CLOSE);
            }
            None => {
                missing.push(suite.to_string());
                out.push_str(&marked[..end + CLOSE.len()]);
            }
        }
        rest = &marked[end + CLOSE.len()..];
    }
    out.push_str(rest);
    Ok((out, missing))
}

/// Rewrites the pages' tables.
pub fn run(args: ResultsArgs) -> anyhow::Result<()> {
    for doc in &args.docs {
        let page =
            std::fs::read_to_string(doc).with_context(|| format!("reading {}", doc.display()))?;
        let (updated, missing) = splice(&page, &args.suites)?;
        std::fs::write(doc, updated).with_context(|| format!("writing {}", doc.display()))?;
        println!("updated the tables of {}", doc.display());
        for suite in missing {
            eprintln!(
                "{}: left the table of {suite} as it was: run `cargo xtask experiment {suite} \
                 --out {}` first",
                doc.display(),
                args.suites.join(&suite).display()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marked_tables_are_replaced_and_the_rest_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        std::fs::create_dir_all(dir.join("a")).unwrap();
        std::fs::write(dir.join("a/summary.md"), "# a\n\n| x |\n|---|\n| 1 |\n").unwrap();
        let page = "intro\n<!-- table a -->\nold\n<!-- end table -->\nafter\n";
        let (new, missing) = splice(page, dir).unwrap();
        assert_eq!(
            new,
            "intro\n<!-- table a -->\n| x |\n|---|\n| 1 |\n<!-- end table -->\nafter\n"
        );
        assert!(missing.is_empty());
        assert_eq!(splice(&new, dir).unwrap().0, new, "idempotent");
        let not_run = "<!-- table b -->\nkept\n<!-- end table -->";
        assert_eq!(
            splice(not_run, dir).unwrap(),
            (not_run.to_string(), vec!["b".to_string()])
        );
        std::fs::write(dir.join("a/other.md"), "# other\n\n| y |\n").unwrap();
        let named = "<!-- table a/other -->\n<!-- end table -->";
        assert_eq!(
            splice(named, dir).unwrap().0,
            "<!-- table a/other -->\n| y |\n<!-- end table -->",
            "a named table of the suite"
        );
        assert!(splice("<!-- table a -->\n", dir).is_err());
        let unclosed = "<!-- table a -->\n<!-- table b -->\n<!-- end table -->";
        assert!(
            splice(unclosed, dir).is_err(),
            "a close belongs to one table"
        );
    }
}
