// Validate KEDA resources (JSON documents, one per argument file) with the models
// @kubernetes-models/keda generates from KEDA's CRDs; prints one line per problem.
import { readFileSync } from "node:fs";
import { ScaledObject, TriggerAuthentication } from "@kubernetes-models/keda/keda.sh/v1alpha1";

const kinds = { ScaledObject, TriggerAuthentication };
let failed = 0;
for (const path of process.argv.slice(2)) {
  const doc = JSON.parse(readFileSync(path, "utf8"));
  const Model = kinds[doc.kind];
  if (!Model) {
    console.log(`${path}: no KEDA model for kind ${doc.kind}`);
    failed++;
    continue;
  }
  try {
    new Model(doc).validate();
    console.log(`${path}: ${doc.kind} ${doc.metadata.name} valid`);
  } catch (error) {
    console.log(`${path}: ${doc.kind} invalid: ${error.message}`);
    failed++;
  }
}
process.exit(failed ? 1 : 0);
