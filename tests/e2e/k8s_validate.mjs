// Validates Kubernetes objects against the schemas of the npm package kubernetes-models.
//   node k8s_validate.mjs NODE_MODULES_DIR < objects.json   (a JSON array of objects)
// Prints a JSON array with one list of errors per object ([] when it is valid). Besides the
// schema's own checks (types, required fields, formats), a field the schema does not know is an
// error too: the schemas accept any extra key, so every key the validator never looked at is
// reported (a map such as labels, whose keys the validator walks, is accepted as it is).
import { pathToFileURL } from "node:url";
import { readFileSync } from "node:fs";
import path from "node:path";

const modules = process.argv[2];
const objects = JSON.parse(readFileSync(0, "utf8"));

// apps/v1 Deployment -> IoK8sApiAppsV1Deployment; v1 Secret -> IoK8sApiCoreV1Secret
function schemaName(apiVersion, kind) {
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["core", apiVersion];
  const cap = (s) => s.charAt(0).toUpperCase() + s.slice(1);
  return `IoK8sApi${cap(group.split(".")[0])}${cap(version)}${kind}`;
}

// A view of value whose reads are recorded: read keys per object, and objects walked whole.
function watch(value, seen) {
  if (value === null || typeof value !== "object") return value;
  const record = { read: new Set(), walked: false };
  seen.set(value, record);
  return new Proxy(value, {
    get(target, key) {
      if (typeof key === "string") record.read.add(key);
      return watch(target[key], seen);
    },
    ownKeys(target) {
      record.walked = true;
      return Reflect.ownKeys(target);
    },
    has(target, key) {
      if (typeof key === "string") record.read.add(key);
      return key in target;
    },
  });
}

function unknownFields(value, seen, where, out) {
  if (value === null || typeof value !== "object") return;
  const record = seen.get(value);
  for (const key of Object.keys(value)) {
    const here = Array.isArray(value) ? `${where}[${key}]` : `${where}/${key}`;
    if (record && !Array.isArray(value) && !record.walked && !record.read.has(key))
      out.push(`${here}: unknown field`);
    else unknownFields(value[key], seen, here, out);
  }
}

const results = [];
for (const obj of objects) {
  const errors = [];
  const name = schemaName(obj.apiVersion || "", obj.kind || "");
  let validate;
  try {
    ({ validate } = await import(pathToFileURL(path.join(modules, "kubernetes-models", "_schemas", `${name}.js`)).href));
  } catch (e) {
    results.push([`${obj.apiVersion} ${obj.kind}: no schema (${name})`]);
    continue;
  }
  const seen = new Map();
  if (!validate(watch(obj, seen)))
    for (const e of validate.errors) errors.push(`${e.instancePath || "/"}: ${e.message || e.keyword} ${JSON.stringify(e.params)}`);
  unknownFields(obj, seen, "", errors);
  results.push(errors);
}
console.log(JSON.stringify(results));
