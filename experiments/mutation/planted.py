"""Plant the 15 one-line bugs that survived the suite in issue 21, one at a time, in a scratch copy of
the repository, and run the guard test file that should catch each. Prints one row per bug.

    CODESIGN_DATA=/work/shared/data nice -n 15 python3 experiments/mutation/planted.py  # all 15 (+ 2 variants)
    nice -n 15 python3 experiments/mutation/planted.py --only kv   # rows whose name contains "kv"

The working tree is never modified; exit status 1 if any planted bug survives or the clean copy fails.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
M, P, RF = "codesign/evaluate/metrics.py", "codesign/evaluate/parsing.py", "hwmodels/roofline.py"
T_SCORES, T_PARSE = "tests/test_guard_scores.py", "tests/test_guard_parsers.py"
T_ROOF, T_QS = "tests/test_guard_roofline.py", "tests/test_guard_quant_store.py"

# name, file, exact old text (must occur once), new text, guard test file
BUGS = [
    ("fairness without EOD", M, "(1.0 - (dpd + eod) / 2.0) * 100.0", "(1.0 - dpd) * 100.0", T_SCORES),
    ("ethics aggregate FPR_jb", M, "acc_few, 1.0 - fpr_jb, 1.0 - fpr_ev", "acc_few, fpr_jb, 1.0 - fpr_ev", T_SCORES),
    ("whole-word guard removed", P, 'r"(?<![a-z0-9])" + r"[\\s\\-_]+"', 'r"[\\s\\-_]+"', T_PARSE),
    ("refusal-before-label flipped (fallback)", P, "(not hits or refusal_at < hits[0][0])",
     "(not hits or refusal_at > hits[0][0])", T_PARSE),
    ("refusal-before-label flipped (opening)", P, "(refusal_at is None or refusal_at > hits[0][0])",
     "(refusal_at is None or refusal_at < hits[0][0])", T_PARSE),
    ("parse_digit one past the last option", P, "int(m.group(1)) < top", "int(m.group(1)) <= top", T_PARSE),
    ("opening-label slack +2", P, "hits[0][0] <= offset + 1", "hits[0][0] <= offset + 2", T_PARSE),
    ("opening-label slack 0", P, "hits[0][0] <= offset + 1", "hits[0][0] <= offset", T_PARSE),
    ("roofline group count floor", RF, "np.ceil(in_f / np.maximum(g_eff, 1))", "np.floor(in_f / np.maximum(g_eff, 1))",
     T_ROOF),
    ("roofline causal pairs P(P-1)/2", RF, "bf * pf * (pf + 1) / 2", "bf * pf * (pf - 1) / 2", T_ROOF),
    ("roofline end-to-end G*tpot", RF, "(ttft + (gf - 1) * tpot)", "(ttft + gf * tpot)", T_ROOF),
    ("roofline KV write bytes dropped", RF, "(kv_read_el + kv_write * T) * kv_bytes_el", "kv_read_el * kv_bytes_el",
     T_ROOF),
    ("HV nadir moved up", "codesign/pareto.py", "return lo - margin * span", "return lo + margin * span", T_QS),
    ("RTN error over |w_hat|^2", "codesign/quantize/rtn.py", "/ w.float().pow(2).sum()", "/ w_hat.float().pow(2).sum()",
     T_QS),
    ("RTN errors without the Hessian", "codesign/quantize/rtn.py", "st.hessian if st else None", "None", T_QS),
    ("store: mode not in outputs primary key", "codesign/store.py", "PRIMARY KEY (variant_id, protocol, task, item_id, mode)",
     "PRIMARY KEY (variant_id, protocol, task, item_id)", T_QS),
    ("store: mode not in done_item_ids", "codesign/store.py",
     '"SELECT item_id FROM outputs WHERE variant_id=? AND protocol=? AND task=? AND mode=?",\n'
     '            (variant_id, protocol, task, mode))',
     '"SELECT item_id FROM outputs WHERE variant_id=? AND protocol=? AND task=?",\n'
     '            (variant_id, protocol, task))', T_QS),
]


def scratch_copy() -> Path:
    tmp = Path(tempfile.mkdtemp(prefix="planted-"))
    for part in ("codesign", "hwmodels", "tests"):
        shutil.copytree(ROOT / part, tmp / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp / "pyproject.toml")
    return tmp


def run_tests(tmp: Path, test_file: str) -> int:
    env = {**os.environ, "PYTHONPATH": str(tmp)}
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", test_file]
    return subprocess.run(cmd, cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="", help="run the bugs whose name contains this text")
    args = ap.parse_args()
    tmp = scratch_copy()
    try:
        bad, clean_rc = 0, {}
        for name, path, old, new, test in BUGS:
            if args.only not in name:
                continue
            f = tmp / path
            src = f.read_text()
            if src.count(old) != 1:
                print(f"{name:42s} NOT PLANTED (text occurs {src.count(old)} times)")
                bad += 1
                continue
            if test not in clean_rc:
                clean_rc[test] = run_tests(tmp, test)
            clean = clean_rc[test]
            f.write_text(src.replace(old, new))
            try:
                rc = run_tests(tmp, test)
            finally:
                f.write_text(src)
            verdict = "caught" if rc != 0 and clean == 0 else ("CLEAN FAILS" if clean else "SURVIVED")
            bad += verdict != "caught"
            print(f"{name:42s} {verdict:8s} by {test}", flush=True)
        return 1 if bad else 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
