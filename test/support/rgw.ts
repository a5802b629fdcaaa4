import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';

/**
 * Ceph's RADOS Gateway (Debian's `radosgw`, Ceph 16), a real S3 server none of this project wrote: one monitor,
 * one OSD on memstore and radosgw's beast frontend on 127.0.0.1, no manager and no cephx, in a temporary
 * directory on free ports, stopped and removed afterwards whatever the outcome. CI installs the packages
 * (`apt-get install --no-install-recommends ceph-mon ceph-osd radosgw ceph-common`) and sets REQUIRE_RGW=1,
 * so there a missing one fails instead of skipping.
 */
export const RGW = (() => {
  const missing = ['ceph-mon', 'ceph-osd', 'radosgw', 'radosgw-admin', 'monmaptool', 'ceph'].filter((tool) => spawnSync('which', [tool]).status !== 0);
  if (missing.length) {
    if (process.env.REQUIRE_RGW === '1') throw new Error(`REQUIRE_RGW=1 but Ceph RGW cannot run here: ${missing.join(', ')} missing`);
    process.stderr.write(`\nCeph RGW needs ${missing.join(', ')} (Debian: ceph-mon ceph-osd radosgw ceph-common); its tests do not run here.\n\n`);
  }
  const version = missing.length ? undefined : /ceph version (\S+)/.exec(spawnSync('ceph', ['--version'], { encoding: 'utf8' }).stdout)?.[1];
  return { available: missing.length === 0, version };
})();

export interface RgwServer {
  endpoint: string;
  bucket: string;
  accessKeyId: string;
  secretAccessKey: string;
  version?: string;
  stop(): Promise<void>;
}

/** The end of a daemon's log, for a failure message. */
function tail(path: string): string {
  try {
    return readFileSync(path, 'utf8').split('\n').slice(-15).join('\n');
  } catch {
    return '(no log)';
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as { port: number }).port;
      server.close(() => resolve(port));
    });
  });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * A cluster that has not answered within a minute and a half is started again from nothing, once or twice: on a
 * loaded machine one in several starts stalled in radosgw's first pool creation (its log ends at start-up),
 * while the next start came up in seconds. Each failure keeps the daemons' last log lines for the message.
 */
export async function startRgw(bucket = 'overskill-rgw'): Promise<RgwServer> {
  const failures: string[] = [];
  for (let attempt = 1; attempt <= 3; attempt++) {
    try {
      return await startRgwOnce(bucket, 90_000);
    } catch (error) {
      failures.push(`attempt ${attempt}: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
  throw new Error(`Ceph RGW did not start:\n${failures.join('\n')}`);
}

async function startRgwOnce(bucket: string, answerWithinMs: number): Promise<RgwServer> {
  const dir = mkdtempSync(join(tmpdir(), 'overskill-rgw-'));
  const children: ChildProcess[] = [];
  const stop = async () => {
    for (const child of children.reverse()) if (child.exitCode === null) child.kill('SIGTERM');
    await sleep(300);
    for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const [monPort, rgwPort] = [await freePort(), await freePort()];
    const fsid = randomUUID();
    for (const sub of ['mon', 'osd', 'run', 'log']) mkdirSync(join(dir, sub));
    const conf = join(dir, 'ceph.conf');
    writeFileSync(
      conf,
      `[global]
fsid = ${fsid}
mon host = 127.0.0.1:${monPort}
mon initial members = a
auth cluster required = none
auth service required = none
auth client required = none
# without it, radosgw loops on "get_initial_auth_request returned -13" when auth is none
ms mon client mode = crc secure
ms bind ipv6 = false
public addr = 127.0.0.1
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon warn on pool no redundancy = false
mon data avail warn = 1
mon data avail crit = 0
osd objectstore = memstore
memstore device bytes = 1073741824
osd crush chooseleaf type = 0
run dir = ${dir}/run
log file = ${dir}/log/$name.log
admin socket = ${dir}/run/$name.asok
mon data = ${dir}/mon/$cluster-$id
osd data = ${dir}/osd/$cluster-$id
rgw frontends = beast endpoint=127.0.0.1:${rgwPort}
rgw data = ${dir}/rgw
`,
    );
    const run = (command: string, args: string[]) => {
      const result = spawnSync(command, ['-c', conf, ...args], { encoding: 'utf8', timeout: 60_000 });
      if (result.status !== 0) throw new Error(`${command} ${args.join(' ')} failed: ${result.stderr || result.error}`);
      return result.stdout.trim();
    };
    const daemon = (command: string, args: string[]) => {
      const child = spawn(command, ['-f', '-c', conf, ...args], { stdio: 'ignore' });
      children.push(child);
    };
    spawnSync('monmaptool', ['--create', '--fsid', fsid, '--addv', 'a', `[v1:127.0.0.1:${monPort}]`, join(dir, 'monmap')], { encoding: 'utf8' });
    run('ceph-mon', ['--mkfs', '-i', 'a', '--monmap', join(dir, 'monmap')]);
    daemon('ceph-mon', ['-i', 'a']);
    const osdUuid = randomUUID();
    let osdId = '';
    for (let tries = 0; !osdId; tries++) {
      try {
        osdId = run('ceph', ['--connect-timeout', '5', 'osd', 'new', osdUuid]);
      } catch (error) {
        if (tries > 20) throw error;
        await sleep(500);
      }
    }
    mkdirSync(join(dir, 'osd', `ceph-${osdId}`), { recursive: true });
    run('ceph-osd', ['-i', osdId, '--mkfs', '--osd-uuid', osdUuid]);
    daemon('ceph-osd', ['-i', osdId]);
    daemon('radosgw', ['-n', 'client.rgw.a']);
    const accessKeyId = 'OVERSKILLRGW';
    const secretAccessKey = 'overskill-rgw-secret';
    const endpoint = `http://127.0.0.1:${rgwPort}`;
    // radosgw answers once its pools exist; the user is created against the running cluster.
    for (let waited = 0; ; waited += 500) {
      const ready = await fetch(endpoint).then((answer) => answer.status < 500, () => false);
      if (ready) break;
      if (waited > answerWithinMs) {
        const logs = ['mon.a', `osd.${osdId}`, 'client.rgw.a'].map((name) => `--- ${name}:\n${tail(join(dir, 'log', `${name}.log`))}`).join('\n');
        throw new Error(`radosgw did not answer on ${endpoint} within ${answerWithinMs / 1000} s:\n${logs}`);
      }
      await sleep(500);
    }
    run('radosgw-admin', ['user', 'create', '--uid=overskill', '--display-name=overskill', `--access-key=${accessKeyId}`, `--secret=${secretAccessKey}`]);
    const client = new S3Client({ endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId, secretAccessKey } });
    try {
      await client.send(new CreateBucketCommand({ Bucket: bucket }));
    } finally {
      client.destroy();
    }
    return { endpoint, bucket, accessKeyId, secretAccessKey, version: RGW.version, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}
