// Runs s3rver in its own process (its list continuation tokens need the legacy OpenSSL provider, which
// is enabled for this process only) and prints {"port": N} once it listens.
const S3rver = require('s3rver');

const [directory, bucketsArg] = process.argv.slice(2);
const server = new S3rver({
  address: '127.0.0.1',
  port: Number(process.env.S3RVER_PORT || 0),
  directory,
  silent: true,
  configureBuckets: (bucketsArg || '').split(',').filter(Boolean).map((name) => ({ name })),
});
server.run().then(
  (address) => process.stdout.write(JSON.stringify({ port: address.port }) + '\n'),
  (error) => {
    process.stderr.write(String(error && error.stack || error) + '\n');
    process.exit(1);
  },
);
const stop = () => server.close().finally(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
process.on('disconnect', stop);
