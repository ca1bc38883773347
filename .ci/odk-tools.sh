#!/usr/bin/env bash
# odk-tools.sh — install the real ODK tools that fieldtally's tests run against.
#
# Everything goes into <repo>/.tools/ (gitignored); the repo root is found from this script's
# location, so it works from any checkout and any working directory. Idempotent: steps already
# done are skipped, so a re-run takes about a second. `--force` redoes every step.
#
#   .ci/odk-tools.sh            # install / check
#   .ci/odk-tools.sh --force    # reinstall from scratch
#
# Needs: python3 (with venv and pip, reaching PyPI), java and javac 17+.
#
# What it installs
#   .tools/venv/                 Python venv with pyxform==4.5.0 (+ openpyxl, its dependency).
#   .tools/venv/bin/xls2xform    XLSForm (.xlsx) -> XForm (.xml), as ODK Central/pyxform does:
#                                  .tools/venv/bin/xls2xform --skip_validate form.xlsx form.xml
#                                (without --skip_validate it also runs ODK Validate, using `java`).
#   .tools/ODK_Validate.jar      ODK Validate, copied out of the pyxform wheel. It contains
#                                JavaRosa, the form engine inside ODK Collect. Exit status 0 means
#                                Collect can load the form:
#                                  java -jar .tools/ODK_Validate.jar form.xml
#   .tools/javarosa/FillForm.class
#                                tests/javarosa/FillForm.java compiled against that jar. Fills a
#                                form with JavaRosa and prints the submission XML exactly as Collect
#                                serializes it (instanceID uuid:…, start/end, repeats, ...):
#                                  java -cp .tools/javarosa:.tools/ODK_Validate.jar FillForm \
#                                       form.xml answers.txt [--edit old_instance.xml] > instance.xml
#                                answers.txt: one `/data/path=value` per line, repeats 1-based as
#                                `/data/members[2]/member_name=Lan`; values in XForm string form.
#                                Form media (hamlets.csv for select_one_from_file, ...) are read
#                                from FORM.xml's folder, as Collect reads its media folder.
#                                --edit behaves like Collect editing a finalized form: the old
#                                instanceID moves to meta/deprecatedID and a new uuid: is given.
#                                Exit 1 with a message on stderr if the form does not load, an
#                                answer is rejected (constraint, bad choice, bad value, unknown or
#                                non-relevant path) or the form cannot be finalized (required empty).
#                                See the header of FillForm.java for details.
#
# How the Rust tests find the tools (relative to the repo root, i.e. CARGO_MANIFEST_DIR's workspace):
#   .tools/venv/bin/xls2xform
#   .tools/ODK_Validate.jar
#   .tools/javarosa/FillForm.class   (classpath: .tools/javarosa:.tools/ODK_Validate.jar)
#   plus `java` on PATH.
# Environment variables:
#   FIELDTALLY_TOOLS         tools directory instead of <repo>/.tools (honoured by this script; the
#                            tests should honour it too and derive the three paths above from it).
#   FIELDTALLY_REQUIRE_TOOLS =1: tests must fail, not skip, when a tool is missing (set it in CI
#                            after running this script); unset: tests that need a tool skip with a
#                            note pointing at this script.
#   FILLFORM_LOCATION        read by FillForm: "lat lon alt acc" answered to odk:setgeopoint
#                            (start-geopoint); unset = no GPS fix, the field stays empty.
#   FILLFORM_DEVICE_ID       read by FillForm: the deviceid property (default collect:FillFormHarness1).
#   FILLFORM_USERNAME        read by FillForm: the username property (default empty).
#   PYTHON                   this script: the Python used to create the venv (default python3).
#
# Timestamps (start/end) use the JVM's time zone; pass TZ or -Duser.timezone=... to java to get
# Collect-like local offsets (e.g. +07:00) instead of Z.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="${FIELDTALLY_TOOLS:-$ROOT/.tools}"
PYTHON="${PYTHON:-python3}"
PYXFORM_VERSION="4.5.0"
FILLFORM_SRC="$ROOT/tests/javarosa/FillForm.java"

FORCE=0
case "${1:-}" in
  --force) FORCE=1 ;;
  "") ;;
  *) echo "usage: $0 [--force]" >&2; exit 2 ;;
esac

say() { printf 'odk-tools: %s\n' "$*"; }
die() { printf 'odk-tools: error: %s\n' "$*" >&2; exit 1; }

for cmd in "$PYTHON" java javac; do
  command -v "$cmd" >/dev/null 2>&1 || die "'$cmd' not found on PATH"
done
[ -f "$FILLFORM_SRC" ] || die "missing $FILLFORM_SRC"

if [ "$FORCE" = 1 ] && [ -d "$TOOLS" ]; then
  say "--force: removing $TOOLS"
  rm -rf "$TOOLS"
fi
mkdir -p "$TOOLS"

# --- 1. Python venv with pyxform -------------------------------------------------------------
VENV="$TOOLS/venv"
VPY="$VENV/bin/python"
installed_pyxform() {
  [ -x "$VPY" ] && [ -x "$VENV/bin/xls2xform" ] &&
    "$VPY" -c 'import importlib.metadata as m; print(m.version("pyxform"))' 2>/dev/null
}
if [ "$(installed_pyxform || true)" = "$PYXFORM_VERSION" ]; then
  say "venv: pyxform $PYXFORM_VERSION already installed in $VENV (skipped)"
else
  if [ -d "$VENV" ]; then
    say "venv: $VENV is incomplete or has another pyxform; recreating it"
    rm -rf "$VENV"
  fi
  say "venv: creating $VENV"
  "$PYTHON" -m venv "$VENV"
  say "venv: pip install pyxform==$PYXFORM_VERSION"
  "$VPY" -m pip install --quiet --disable-pip-version-check "pyxform==$PYXFORM_VERSION"
  [ "$(installed_pyxform || true)" = "$PYXFORM_VERSION" ] || die "pyxform $PYXFORM_VERSION did not install"
  say "venv: installed pyxform $PYXFORM_VERSION ($("$VPY" -c 'import importlib.metadata as m; print("openpyxl", m.version("openpyxl"))'))"
fi

# --- 2. ODK_Validate.jar from the pyxform package -------------------------------------------
SRC_JAR="$("$VPY" -c 'import os, pyxform; print(os.path.join(os.path.dirname(pyxform.__file__), "validators", "odk_validate", "bin", "ODK_Validate.jar"))')"
[ -f "$SRC_JAR" ] || die "ODK_Validate.jar not found in the pyxform package (looked at $SRC_JAR)"
JAR="$TOOLS/ODK_Validate.jar"
if [ -f "$JAR" ] && cmp -s "$SRC_JAR" "$JAR"; then
  say "jar: $JAR is up to date (skipped)"
else
  cp -p "$SRC_JAR" "$JAR.tmp"
  mv -f "$JAR.tmp" "$JAR"
  say "jar: copied $SRC_JAR -> $JAR"
fi
JAVAROSA_VERSION="$("$VPY" - "$JAR" <<'EOF'
import sys, zipfile
try:
    props = zipfile.ZipFile(sys.argv[1]).read("META-INF/maven/org.getodk/javarosa/pom.properties").decode()
    print(next(l.split("=", 1)[1] for l in props.splitlines() if l.startswith("version=")))
except Exception:
    print("unknown")
EOF
)"

# --- 3. FillForm compiled against the jar ---------------------------------------------------
CLASSES="$TOOLS/javarosa"
CLASS="$CLASSES/FillForm.class"
if [ -f "$CLASS" ] && [ ! "$FILLFORM_SRC" -nt "$CLASS" ] && [ ! "$JAR" -nt "$CLASS" ]; then
  say "javarosa: $CLASS is up to date (skipped)"
else
  say "javarosa: compiling $FILLFORM_SRC against JavaRosa $JAVAROSA_VERSION"
  rm -rf "$CLASSES.tmp"
  mkdir -p "$CLASSES.tmp"
  javac -encoding UTF-8 -nowarn -d "$CLASSES.tmp" -cp "$JAR" "$FILLFORM_SRC"
  rm -rf "$CLASSES"
  mv "$CLASSES.tmp" "$CLASSES"
  say "javarosa: wrote $CLASSES/"
fi

say "ready: xls2xform=$VENV/bin/xls2xform"
say "       ODK Validate=$JAR (JavaRosa $JAVAROSA_VERSION)"
say "       FillForm: java -cp $CLASSES:$JAR FillForm FORM.xml ANSWERS.txt [--edit OLD.xml]"
