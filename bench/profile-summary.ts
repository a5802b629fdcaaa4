import { readFileSync } from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string };
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** Where a CPU profile's time went, by package (or "this tool", "node", "idle"), as percentages. */
export function summarizeProfile(path: string): { group: string; percent: number }[] {
  const profile = JSON.parse(readFileSync(path, 'utf8')) as CpuProfile;
  const groupOf = new Map<number, string>();
  for (const node of profile.nodes) {
    const { url, functionName } = node.callFrame;
    let group: string;
    if (functionName === '(idle)') group = 'idle (waiting on I/O)';
    else if (functionName === '(garbage collector)') group = 'garbage collection';
    else if (!url) group = 'native / V8';
    else if (url.startsWith('node:')) group = 'node built-ins (http, streams, crypto)';
    else {
      const match = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
      group = match ? match[1] : 'overskill-storage';
    }
    groupOf.set(node.id, group);
  }
  const totals = new Map<string, number>();
  let all = 0;
  profile.samples.forEach((id, index) => {
    const delta = profile.timeDeltas[index] ?? 0;
    const group = groupOf.get(id) ?? 'unknown';
    totals.set(group, (totals.get(group) ?? 0) + delta);
    all += delta;
  });
  return [...totals.entries()]
    .map(([group, time]) => ({ group, percent: (100 * time) / all }))
    .sort((a, b) => b.percent - a.percent);
}
