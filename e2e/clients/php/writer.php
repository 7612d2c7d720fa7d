<?php
// The PHP AsyncAws consumer of the client matrix (e2e/clients).
//
// Debian ships AsyncAws core without an S3 client, so this is the smallest
// one: an AbstractApi subclass, as every AsyncAws client is, whose PUT goes
// through AsyncAws's own credential chain (cached as its clients cache it)
// and its own SigV4 signer. One client for the whole life of the process:
// it writes PREFIX-N to BUCKET every second, ROUNDS times or until the Unix
// time UNTIL (0: no limit), and prints one JSON line per write saying when it started, which access key id signed it
// (empty: the chain found nothing and the request went unsigned, as AsyncAws
// sends it) and the error, if any.
//
// Usage: php writer.php ENDPOINT BUCKET PREFIX ROUNDS UNTIL

declare(strict_types=1);

require_once '/usr/share/php/AsyncAws/Core/autoload.php';

use AsyncAws\Core\AbstractApi;
use AsyncAws\Core\Configuration;
use AsyncAws\Core\Credentials\CacheProvider;
use AsyncAws\Core\Credentials\ChainProvider;
use AsyncAws\Core\Credentials\CredentialProvider;
use AsyncAws\Core\Credentials\Credentials;
use AsyncAws\Core\Credentials\InstanceProvider;
use AsyncAws\Core\Request;
use AsyncAws\Core\RequestContext;
use AsyncAws\Core\Stream\StringStream;

// Records the access key id of the credentials the client signs with.
final class Recording implements CredentialProvider
{
    public string $last = '';

    public function __construct(private CredentialProvider $inner)
    {
    }

    public function getCredentials(Configuration $configuration): ?Credentials
    {
        $c = $this->inner->getCredentials($configuration);
        $this->last = null === $c ? '' : $c->getAccessKeyId();

        return $c;
    }
}

final class S3Writer extends AbstractApi
{
    public function put(string $bucket, string $key, string $body): void
    {
        $request = new Request('PUT', '/' . rawurlencode($bucket) . '/' . rawurlencode($key), [], [
            'content-type' => 'text/plain',
            // S3 wants the payload hash as a header, as AsyncAws's S3 client sends it.
            'x-amz-content-sha256' => hash('sha256', $body),
        ], StringStream::create($body));
        $this->getResponse($request, new RequestContext(['operation' => 'PutObject']))->resolve();
    }

    protected function getEndpointMetadata(?string $region): array
    {
        return [
            'endpoint' => $this->getConfiguration()->get('endpoint'),
            'signRegion' => $region ?? $this->getConfiguration()->get('region'),
            'signService' => 's3',
            'signVersions' => ['v4'],
        ];
    }
}

// AsyncAws's default chain, minus instance metadata: on this machine it
// would only send a request to 169.254.169.254 and time out. The order is
// checked against ChainProvider::createDefaultChain so that a new AsyncAws
// whose chain differs fails here instead of being measured as the old one.
$default = ChainProvider::createDefaultChain();
$providers = (fn () => $this->providers)->call($default);
$names = array_map(fn ($p) => (new ReflectionClass($p))->getShortName(), $providers);
$want = ['ConfigurationProvider', 'WebIdentityProvider', 'IniFileProvider', 'ContainerProvider', 'InstanceProvider'];
if ($names !== $want) {
    fwrite(STDERR, 'AsyncAws default credential chain is ' . implode(', ', $names) . ', not ' . implode(', ', $want) . "\n");
    exit(2);
}
$recording = new Recording(new CacheProvider(new ChainProvider(array_values(array_filter($providers, fn ($p) => !$p instanceof InstanceProvider)))));

[, $endpoint, $bucket, $prefix, $rounds, $until] = $argv;
$more = fn (int $i) => (0 === (int) $rounds || $i < (int) $rounds) && (0.0 === (float) $until || microtime(true) < (float) $until);
$client = new S3Writer(['endpoint' => $endpoint, 'pathStyleEndpoint' => 'true'], $recording);
for ($i = 0; $more($i); ++$i) {
    $started = microtime(true);
    $line = ['time' => gmdate('Y-m-d\TH:i:s', (int) $started) . sprintf('.%03dZ', (int) (fmod($started, 1) * 1000)), 'round' => $i];
    try {
        $client->put($bucket, $prefix . '-' . $i, "written by AsyncAws\n");
    } catch (Throwable $e) {
        $line['error'] = get_class($e) . ': ' . $e->getMessage();
    }
    $line['accessKeyId'] = $recording->last;
    echo json_encode($line), "\n";
    if ($more($i + 1)) {
        usleep((int) max(0, (1 - (microtime(true) - $started)) * 1e6));
    }
}
