//! Embeds every XForm in `xforms/` and every indicator definition in `indicators/`, so the server
//! binary carries them and runs from any directory.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::{env, fs};

/// Writes `const {name}: &[(&str, &[u8])]` listing the files of `dir` ending in `.{ext}`,
/// sorted, as (file stem, bytes).
fn embed(
    dir: &Path,
    ext: &str,
    name: &str,
    out: &mut String,
) -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<PathBuf> = fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    files.sort();
    writeln!(out, "pub const {name}: &[(&str, &[u8])] = &[")?;
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
        let stem = f.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
        writeln!(
            out,
            "    ({stem:?}, include_bytes!({:?})),",
            f.display().to_string()
        )?;
    }
    out.push_str("];\n");
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let mut out = String::new();
    embed(&root.join("xforms"), "xml", "FORMS", &mut out)?;
    embed(&root.join("indicators"), "toml", "INDICATORS", &mut out)?;
    fs::write(PathBuf::from(env::var("OUT_DIR")?).join("shipped.rs"), out)?;
    Ok(())
}
