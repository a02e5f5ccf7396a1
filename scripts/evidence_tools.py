#!/usr/bin/env python3
"""Reads an unpacked nodeproof evidence bundle with the tools auditors and CI already use:
compliance-trestle loads assessment-results.json as OSCAL assessment results, junitparser
reads junit.xml. Prints what they read as JSON (for collector/tests/evidence.rs).

Usage: evidence_tools.py BUNDLE_DIR   (run with the Python that scripts/pyenv prints)
"""
import json
import pathlib
import sys

from junitparser import Error, Failure, JUnitXml
from trestle.oscal.assessment_results import AssessmentResults

bundle = pathlib.Path(sys.argv[1])
ar = AssessmentResults.oscal_read(bundle / "assessment-results.json")
xml = JUnitXml.fromfile(str(bundle / "junit.xml"))
suites = list(xml)
cases = [case for suite in suites for case in suite]
failures = [c for c in cases if any(isinstance(r, Failure) for r in c.result)]
errors = [c for c in cases if any(isinstance(r, Error) for r in c.result)]
print(json.dumps({
    "oscal_results": len(ar.results),
    "oscal_findings": sum(len(r.findings or []) for r in ar.results),
    "junit_suites": len(suites),
    "junit_tests": len(cases),
    "junit_failures": len(failures),
    "junit_errors": len(errors),
}))
