import type { StorageContext } from '../../../src/context.ts';
import type { GlobalOptions } from '../input/context.ts';
import type { Output } from '../render/output.ts';

/**
 * Before a command's first object write: the store proves its conditions (src/ops/store-gate.ts), or the
 * command refuses with exit 2. Returns what the run records.
 */
export async function gateStore(context: StorageContext, output: Output, globals: GlobalOptions, options: { keepsObjects?: boolean } = {}): Promise<Record<string, unknown>> {
  const [{ proveStore, storeGateRecord }, { describeLifecycle }] = await Promise.all([import('../../../src/ops/store-gate.ts'), import('../../../src/store/lifecycle.ts')]);
  const gate = await proveStore(context.store, { allowUnconditional: globals.allowUnconditionalStore ?? false, keepsObjects: options.keepsObjects });
  const { classA, classB, free } = gate.check.requests;
  const cost = `${classA + classB + free} probe requests, probes deleted`;
  if (gate.overridden) {
    const missing = gate.check.properties.filter((p) => p.required && !p.holds && p.id !== 'lifecycleKeepsObjects').map((p) => p.property);
    output.warn(`The store does not hold: ${missing.join('; ')}. Running anyway (--allow-unconditional-store): an app writing to this bucket meanwhile could lose writes.`);
  } else {
    output.info(`Store check: conditional writes, ETags and metadata hold (${cost}).`);
  }
  const lifecycle = gate.check.lifecycle;
  if (lifecycle && (lifecycle.expiring.length || lifecycle.transitions.length || lifecycle.state === 'unknown')) output.warn(`Bucket lifecycle: ${describeLifecycle(lifecycle)}.`);
  if (gate.check.leftBehind.length) output.warn(`Probe objects the store would not delete: ${gate.check.leftBehind.join(', ')}`);
  return storeGateRecord(gate);
}
