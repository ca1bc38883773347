//! The real ODK tools (pyxform, ODK Validate, JavaRosa), installed by `.ci/odk-tools.sh` into
//! `.tools/`. Outside CI a test that needs them skips loudly when they are absent; in CI
//! (`CI=true`) their absence fails the test.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Tools {
    pub dir: PathBuf,
}

impl Tools {
    /// The tools, or `None` (after saying so) when they are missing outside CI.
    pub fn find(test: &str) -> Option<Tools> {
        let dir = std::env::var("FIELDTALLY_TOOLS")
            .map(PathBuf::from)
            .unwrap_or_else(|_| super::repo_root().join(".tools"));
        let tools = Tools { dir };
        let present = tools.xls2xform().is_file()
            && tools.validate_jar().is_file()
            && tools.dir.join("javarosa/FillForm.class").is_file()
            && Command::new("java").arg("-version").output().is_ok();
        if present {
            return Some(tools);
        }
        let in_ci = std::env::var("CI").is_ok_and(|v| v == "true")
            || std::env::var("FIELDTALLY_REQUIRE_TOOLS").is_ok_and(|v| v == "1");
        assert!(
            !in_ci,
            "{test}: the ODK tools are missing in CI; run .ci/odk-tools.sh"
        );
        eprintln!(
            "SKIPPED {test}: ODK tools not installed (run .ci/odk-tools.sh to install pyxform, ODK Validate and the JavaRosa harness)"
        );
        None
    }

    pub fn xls2xform(&self) -> PathBuf {
        self.dir.join("venv/bin/xls2xform")
    }

    pub fn validate_jar(&self) -> PathBuf {
        self.dir.join("ODK_Validate.jar")
    }

    /// pyxform's XForm for an XLSForm.
    pub fn convert(&self, xlsx: &Path) -> Vec<u8> {
        let out = tempfile::Builder::new()
            .suffix(".xml")
            .tempfile()
            .expect("temp");
        let status = Command::new(self.xls2xform())
            .arg("--skip_validate")
            .arg(xlsx)
            .arg(out.path())
            .output()
            .expect("run xls2xform");
        assert!(
            status.status.success(),
            "xls2xform failed: {}",
            String::from_utf8_lossy(&status.stderr)
        );
        std::fs::read(out.path()).expect("read converted form")
    }

    /// Runs ODK Validate (JavaRosa) on a form; panics with its output when the form is invalid.
    pub fn validate(&self, xml: &[u8]) {
        let f = tempfile::Builder::new()
            .suffix(".xml")
            .tempfile()
            .expect("temp");
        std::fs::write(f.path(), xml).expect("write");
        let out = Command::new("java")
            .arg("-jar")
            .arg(self.validate_jar())
            .arg(f.path())
            .output()
            .expect("run ODK Validate");
        assert!(
            out.status.success(),
            "ODK Validate rejected the form: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Fills `form` with JavaRosa and serializes the instance as Collect does; with `edit`, an
    /// edit of that earlier instance (new instanceID, old one in deprecatedID).
    pub fn fill(&self, form: &[u8], answers: &str, edit: Option<&[u8]>) -> Vec<u8> {
        self.fill_with_media(form, &[], answers, edit)
    }

    /// [`Tools::fill`] with form media (e.g. `hamlets.csv` for select_one_from_file) placed
    /// beside the form, where FillForm looks for them as Collect does in the media folder.
    pub fn fill_with_media(
        &self,
        form: &[u8],
        media: &[(&str, &[u8])],
        answers: &str,
        edit: Option<&[u8]>,
    ) -> Vec<u8> {
        let dir = tempfile::tempdir().expect("temp");
        for (name, bytes) in media {
            std::fs::write(dir.path().join(name), bytes).expect("write media file");
        }
        let form_path = dir.path().join("form.xml");
        let answers_path = dir.path().join("answers.txt");
        std::fs::write(&form_path, form).expect("write form");
        std::fs::write(&answers_path, answers).expect("write answers");
        let classpath = format!(
            "{}:{}",
            self.dir.join("javarosa").display(),
            self.validate_jar().display()
        );
        let mut cmd = Command::new("java");
        cmd.arg("-cp")
            .arg(classpath)
            .arg("FillForm")
            .arg(&form_path)
            .arg(&answers_path);
        if let Some(old) = edit {
            let old_path = dir.path().join("old.xml");
            std::fs::write(&old_path, old).expect("write old instance");
            cmd.arg("--edit").arg(old_path);
        }
        let out = cmd.output().expect("run FillForm");
        assert!(
            out.status.success(),
            "FillForm failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }
}
