#!/usr/bin/env bash
# Installs code-server (VS Code in the browser, from the npm registry) into DIR for the end-to-end test, reaching
# nothing but the npm registry and Debian's apt. Idempotent: a second run takes a second.
# Usage: scripts/install-code-server.sh DIR        then: DIR/node_modules/.bin/code-server --help
# Why each step: npm as root needs unsafe-perm; kerberos builds from source (libkrb5-dev); @vscode/ripgrep's
# postinstall downloads from GitHub, so scripts are skipped and Debian's rg is copied in; native modules are rebuilt;
# VS Code loads node_modules through node_modules.asar. 4.100.3 (VS Code 1.100.3) is the last release for Node 20.
set -euo pipefail
dir=${1:?usage: install-code-server.sh DIR}
version=${CODE_SERVER_VERSION:-4.100.3}
mkdir -p "$dir"; dir=$(cd "$dir" && pwd)
cs="$dir/node_modules/code-server"
if [ -f "$dir/.installed-$version" ]; then echo "code-server $version already in $dir"; exit 0; fi

need=()
for p in ripgrep libkrb5-dev; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
export npm_config_unsafe_perm=true npm_config_yes=true npm_config_fund=false npm_config_audit=false

cd "$dir"
[ -f package.json ] || echo '{"name":"code-server-host","private":true}' > package.json
npm install --no-save --ignore-scripts "code-server@$version" >/dev/null
npm rebuild argon2 >/dev/null 2>&1 || true

cd "$cs/lib/vscode"
npm install --omit=dev --ignore-scripts >/dev/null
mkdir -p node_modules/@vscode/ripgrep/bin
cp /usr/bin/rg node_modules/@vscode/ripgrep/bin/rg
npm rebuild >/dev/null 2>&1 || true
[ -e node_modules.asar ] || ln -s node_modules node_modules.asar
(cd bin/remote-cli && ln -sfn code-linux.sh code-server)
(cd bin/helpers && ln -sfn browser-linux.sh browser.sh)
(cd extensions && npm install --omit=dev >/dev/null)

for m in node_modules/node-pty/build/Release/pty.node node_modules/@vscode/spdlog/build/Release/spdlog.node; do
  [ -f "$m" ] || { echo "install-code-server: missing $m" >&2; exit 1; }
done
touch "$dir/.installed-$version"
echo "code-server $version installed in $dir"
