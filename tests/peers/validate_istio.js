// Validates Istio manifests against the CRD schemas shipped in @kubernetes-models/istio, so a
// typo such as `action: PERMIT` is caught without a cluster.
//
//   node tests/peers/validate_istio.js <file-or-directory>...
//
// stdout, one line per Istio document: `ok <file> <kind>/<name>` or `FAIL <file> <kind>/<name>:
// <reason>`; other documents (Namespace, ...) are listed as `skip`, Kustomization files are
// ignored. Exit 1 on any FAIL, on a file that is not YAML, or when no Istio document was found.
// Packages resolve through NODE_PATH (scripts/peers.sh exports it).
'use strict';

const fs = require('fs');
const path = require('path');
const { pathToFileURL } = require('url');
const yaml = require('js-yaml');

// The models are ESM-only and import() ignores NODE_PATH, so locate the package with require
// (its package.json is exported) and import the model files by absolute URL.
const istioPkg = require.resolve('@kubernetes-models/istio/package.json');
const istioDir = path.dirname(istioPkg);
// Supported "<group>/<version>" pairs, read from the package's own export map rather than
// built from manifest text into a file path.
const apiVersions = new Set(
  Object.keys(require(istioPkg).exports)
    .map((k) => k.replace(/^\.\//, ''))
    .filter((k) => /^[a-z0-9.-]+\.istio\.io\/v[a-z0-9]+$/.test(k)),
);

function yamlFiles(arg) {
  if (!fs.statSync(arg).isDirectory()) return [arg];
  return fs
    .readdirSync(arg, { withFileTypes: true })
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    .flatMap((e) => {
      const p = path.join(arg, e.name);
      if (e.isDirectory()) return yamlFiles(p);
      return /\.ya?ml$/.test(e.name) ? [p] : [];
    });
}

const versionModules = new Map();
async function modelFor(apiVersion, kind) {
  if (!apiVersions.has(apiVersion)) return undefined;
  if (!versionModules.has(apiVersion)) {
    const url = pathToFileURL(path.join(istioDir, apiVersion, 'index.js')).href;
    versionModules.set(apiVersion, await import(url));
  }
  const mod = versionModules.get(apiVersion);
  const Model = Object.hasOwn(mod, kind) ? mod[kind] : undefined;
  return Model && Model.kind === kind && Model.apiVersion === apiVersion ? Model : undefined;
}

// ajv's message says "must be equal to one of the allowed values" without naming them.
function reason(err) {
  if (!Array.isArray(err.errors)) return err.message;
  return err.errors
    .map((e) => {
      const allowed = e.params && e.params.allowedValues;
      return `${e.instancePath || '/'} ${e.message}${allowed ? ` (${allowed.join(', ')})` : ''}`;
    })
    .join('; ');
}

async function main() {
  const args = process.argv.slice(2);
  if (args.length === 0) {
    console.error('usage: validate_istio.js <file-or-directory>...');
    return 2;
  }
  let failed = 0;
  let istio = 0;
  for (const file of args.flatMap(yamlFiles)) {
    if (/^kustomization\.ya?ml$/.test(path.basename(file))) continue;
    let docs;
    try {
      docs = yaml.loadAll(fs.readFileSync(file, 'utf8'));
    } catch (e) {
      console.error(`error: ${file} is not valid YAML: ${e.message}`);
      return 1;
    }
    for (const doc of docs) {
      if (doc == null) continue;
      const apiVersion = typeof doc.apiVersion === 'string' ? doc.apiVersion : '';
      const kind = doc.kind;
      const id = `${kind}/${(doc.metadata && doc.metadata.name) || '<unnamed>'}`;
      if (kind === 'Kustomization') continue;
      // A bare "security.istio.io" (no version) still counts as Istio, and so fails below.
      const group = apiVersion.split('/')[0];
      if (!group.endsWith('istio.io')) {
        console.log(`skip ${file} ${id} (${apiVersion || 'no apiVersion'})`);
        continue;
      }
      istio++;
      const Model = await modelFor(apiVersion, kind);
      if (!Model) {
        console.log(`FAIL ${file} ${id}: unknown Istio kind ${kind} in ${apiVersion}`);
        failed++;
        continue;
      }
      try {
        new Model(doc).validate();
        console.log(`ok ${file} ${id}`);
      } catch (e) {
        console.log(`FAIL ${file} ${id}: ${reason(e)}`);
        failed++;
      }
    }
  }
  if (istio === 0) {
    console.error('error: no Istio document found');
    return 1;
  }
  return failed > 0 ? 1 : 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (e) => {
    // A missing path (ENOENT) is the user's mistake; anything else is a bug worth a stack.
    console.error(`error: ${e.code ? e.message : e.stack || e}`);
    process.exitCode = 1;
  },
);
