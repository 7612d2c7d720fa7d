// The AWS SDK for JavaScript v3 consumer of the client matrix (e2e/clients).
//
// One S3 client for the whole life of the process, as a service holds it,
// with the SDK's default credential chain (nothing configured in code): it
// writes PREFIX-N to BUCKET every second, ROUNDS times or until the Unix
// time UNTIL (0: no limit), and prints one JSON line per write saying when it started, which access key id signed it
// (empty: sent unsigned) and the error, if any.
//
// Usage: node writer.mjs ENDPOINT BUCKET PREFIX ROUNDS UNTIL
import { S3Client, PutObjectCommand } from "@aws-sdk/client-s3";

const [endpoint, bucket, prefix] = process.argv.slice(2);
const [rounds, until] = process.argv.slice(5).map(Number);
const more = (i) => (rounds === 0 || i < rounds) && (until === 0 || Date.now() / 1000 < until);
const s3 = new S3Client({ endpoint, forcePathStyle: true });
let signedBy = "";
// The deserialize step runs after signing, once per attempt.
s3.middlewareStack.add(
  (next) => async (args) => {
    const auth = args.request?.headers?.authorization ?? "";
    signedBy = (auth.split("Credential=")[1] ?? "").split("/")[0];
    return next(args);
  },
  { step: "deserialize", name: "stsbindSignedBy" },
);

for (let i = 0; more(i); i++) {
  const started = Date.now();
  signedBy = "";
  const line = { time: new Date(started).toISOString(), round: i };
  try {
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: `${prefix}-${i}`, Body: "written by aws-sdk-js-v3\n" }));
  } catch (e) {
    line.error = `${e.name}: ${e.message}`;
  }
  line.accessKeyId = signedBy;
  console.log(JSON.stringify(line));
  if (more(i + 1)) {
    await new Promise((r) => setTimeout(r, Math.max(0, 1000 - (Date.now() - started))));
  }
}
