/** verify by listings against verify --deep and one HEAD per object, direct and through 50 ms; report on the same rows. */
import { requestsOf } from '../figures.ts';
import { latencyProxy, type BenchStore } from '../fixture.ts';
import { runWorker, type Measure } from '../processes.ts';

export interface VerifyResults {
  verify: { default: Measure; deep: Measure; headPerObject: Measure };
  verifyLatency?: { default: Measure; headPerObject: Measure; speedup: number };
  report: { rows: number; seconds: number };
}

export async function measureVerify(url: string, s3: BenchStore, rows: number, throughLatency: boolean): Promise<VerifyResults> {
  const verifyDefault = await runWorker('verify', url, s3.endpoint, s3.bucket, 16);
  const verifyDeep = await runWorker('verify-deep', url, s3.endpoint, s3.bucket, 16);
  const verifyHead = await runWorker('verify-head', url, s3.endpoint, s3.bucket, 16);
  console.log(`verify (listings)  ${verifyDefault.seconds.toFixed(2)} s, ${requestsOf(verifyDefault)} S3 requests for ${verifyDefault.objects} objects (${((100 * requestsOf(verifyDefault)) / verifyDefault.objects).toFixed(2)}%)`);
  console.log(`verify --deep      ${verifyDeep.seconds.toFixed(2)} s, ${requestsOf(verifyDeep)} S3 requests`);
  console.log(`HEAD per object    ${verifyHead.seconds.toFixed(2)} s, ${requestsOf(verifyHead)} S3 requests  → listings are ${(verifyHead.seconds / verifyDefault.seconds).toFixed(1)}x faster`);
  const results: VerifyResults = { verify: { default: verifyDefault, deep: verifyDeep, headPerObject: verifyHead }, report: { rows, seconds: 0 } };
  if (throughLatency) {
    // The same comparison where every request costs an R2-like round trip.
    const proxy = await latencyProxy(s3);
    const listed = await runWorker('verify', url, proxy.endpoint, s3.bucket, 16);
    const headed = await runWorker('verify-head', url, proxy.endpoint, s3.bucket, 16);
    await proxy.stop();
    console.log(`through a 50 ms proxy: verify ${listed.seconds.toFixed(2)} s vs HEAD per object ${headed.seconds.toFixed(2)} s (c=16) → ${(headed.seconds / listed.seconds).toFixed(1)}x faster`);
    results.verifyLatency = { default: listed, headPerObject: headed, speedup: headed.seconds / listed.seconds };
  }
  const report = await runWorker('report', url, s3.endpoint, s3.bucket, 1);
  console.log(`report             ${report.seconds.toFixed(3)} s on ${rows} rows`);
  results.report = { rows, seconds: report.seconds };
  return results;
}
