import { GetBucketLifecycleConfigurationCommand, type LifecycleRule, type S3Client } from '@aws-sdk/client-s3';
import { describeS3Error, httpStatusOf } from './client.ts';

/** Every key this tool writes is under this prefix (keys.ts). */
export const TOOL_KEY_PREFIX = 'apps/';

export interface LifecycleRuleSummary {
  id: string;
  /** The key prefix the rule filters on ('' for every key). */
  prefix: string;
  /** "after 30 days", "on 2027-01-01". */
  when: string;
  /** The storage class a transition moves objects to. */
  storageClass?: string;
}

export interface LifecycleCheck {
  /** `rules`: the configuration was read; `none`: the bucket has none; `unknown`: the store did not say. */
  state: 'rules' | 'none' | 'unknown';
  /** Enabled expiration rules that reach keys of this tool's: they would delete contents whose only copy is there. */
  expiring: LifecycleRuleSummary[];
  /** Enabled transitions of this tool's keys to another storage class (Infrequent Access on R2). */
  transitions: LifecycleRuleSummary[];
  /** Rules seen in all (enabled or not, any prefix). */
  rules: number;
  /** Why the state is unknown. */
  seen?: string;
}

/** The prefix a rule filters on: Filter.Prefix, Filter.And.Prefix, or the older Rule.Prefix; '' for all keys. */
function prefixOf(rule: LifecycleRule): string {
  return rule.Filter?.Prefix ?? rule.Filter?.And?.Prefix ?? rule.Prefix ?? '';
}

/**
 * Whether a rule can act on an object this tool wrote. Its prefix must overlap the tool's (a rule on '' or
 * 'apps/' takes all of them, one on 'apps/7/' some); a rule that also asks for a tag never does, because the
 * tool tags nothing. Size filters are taken as matching: some contents will fall within them.
 */
function reachesToolKeys(rule: LifecycleRule): boolean {
  if (rule.Filter?.Tag || rule.Filter?.And?.Tags?.length) return false;
  const prefix = prefixOf(rule);
  return TOOL_KEY_PREFIX.startsWith(prefix) || prefix.startsWith(TOOL_KEY_PREFIX);
}

function whenOf(action: { Days?: number; Date?: Date }): string {
  if (action.Days !== undefined) return `after ${action.Days} day${action.Days === 1 ? '' : 's'}`;
  if (action.Date) return `on ${action.Date.toISOString().slice(0, 10)}`;
  return 'at once';
}

/** Judges a bucket's lifecycle rules against the keys this tool writes. */
export function judgeLifecycle(rules: LifecycleRule[]): LifecycleCheck {
  const expiring: LifecycleRuleSummary[] = [];
  const transitions: LifecycleRuleSummary[] = [];
  rules.forEach((rule, index) => {
    if (rule.Status !== 'Enabled' || !reachesToolKeys(rule)) return;
    const id = rule.ID || `rule ${index + 1}`;
    const prefix = prefixOf(rule);
    const expiration = rule.Expiration;
    // ExpiredObjectDeleteMarker alone removes delete markers of versioned buckets, never a current object.
    if (expiration && (expiration.Days !== undefined || expiration.Date !== undefined)) expiring.push({ id, prefix, when: whenOf(expiration) });
    for (const transition of rule.Transitions ?? []) {
      if (transition.StorageClass && String(transition.StorageClass) !== 'STANDARD') transitions.push({ id, prefix, when: whenOf(transition), storageClass: transition.StorageClass });
    }
  });
  return { state: rules.length ? 'rules' : 'none', expiring, transitions, rules: rules.length };
}

/**
 * Reads the bucket's lifecycle configuration (GetBucketLifecycleConfiguration, which R2 implements: "Object
 * lifecycles"; R2 applies expirations within about a day, behind every client's back). A bucket with none
 * answers 404 NoSuchLifecycleConfiguration; a store that does not implement the call, or refuses it to these
 * credentials, leaves it unknown.
 */
export async function readLifecycle(client: S3Client, bucket: string): Promise<LifecycleCheck> {
  try {
    const answer = await client.send(new GetBucketLifecycleConfigurationCommand({ Bucket: bucket }));
    return judgeLifecycle(answer.Rules ?? []);
  } catch (error) {
    const name = (error as { name?: string }).name;
    if (name === 'NoSuchLifecycleConfiguration' || (httpStatusOf(error) === 404 && name !== 'NoSuchBucket')) return { state: 'none', expiring: [], transitions: [], rules: 0 };
    return { state: 'unknown', expiring: [], transitions: [], rules: 0, seen: describeS3Error(error) };
  }
}

/** One line on what the rules do to the tool's keys. */
export function describeLifecycle(check: LifecycleCheck): string {
  if (check.state === 'unknown') return `unknown: the store did not return the bucket's lifecycle rules (${check.seen ?? 'no answer'}); check them by hand`;
  if (check.state === 'none') return 'no lifecycle rules';
  const rule = (r: LifecycleRuleSummary) => `"${r.id}" on ${r.prefix ? `${r.prefix}*` : 'every key'} ${r.when}`;
  if (check.expiring.length) return `expiration: ${check.expiring.map(rule).join('; ')} would delete objects whose content finalize clears from the database`;
  if (check.transitions.length) return `no expiration of ${TOOL_KEY_PREFIX}; transition: ${check.transitions.map((r) => `${rule(r)} to ${r.storageClass}`).join('; ')}`;
  return `${check.rules} rule${check.rules === 1 ? '' : 's'}, none expiring or moving ${TOOL_KEY_PREFIX}`;
}
