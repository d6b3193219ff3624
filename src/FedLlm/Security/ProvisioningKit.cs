using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using FedLlm.Io;

namespace FedLlm.Security;

/// <summary>
/// Writes everything a federation needs to start with mutual TLS, one folder per participant, as NVFlare's provisioning
/// does: the operator keeps ca/, copies server/ to the server machine and each client-{id}/ to that client.
/// </summary>
/// <remarks>
/// Layout:
/// <code>
/// kit.json                  what was provisioned (server URL, hosts, clients); read by AddClient
/// ca/ca.crt, ca/ca.key      the CA; the key stays with the operator
/// server/server.crt, server.key, ca.crt, client-tokens.json (hashes only), client-certificates.json (pins), server.yaml
/// client-{id}/client.crt, client.key, ca.crt, token, client.yaml
/// </code>
/// Keys and tokens are 0600 on Unix.
/// </remarks>
public static partial class ProvisioningKit
{
    /// <summary>The kit's manifest: what was issued, for whom, and when.</summary>
    public const string ManifestFileName = "kit.json";

    /// <summary>The folders of the CA (kept by the operator) and of the server.</summary>
    public const string CaFolder = "ca", ServerFolder = "server";

    /// <summary>The server's certificate, private key and configuration inside its folder.</summary>
    public const string ServerCertificateFileName = "server.crt", ServerKeyFileName = "server.key", ServerConfigFileName = "server.yaml";

    /// <summary>A client's certificate, private key, token and configuration inside its client-{id}/ folder.</summary>
    public const string ClientCertificateFileName = "client.crt", ClientKeyFileName = "client.key", TokenFileName = "token", ClientConfigFileName = "client.yaml";

    /// <summary>An admin's certificate and private key inside its admin-{name}/ folder.</summary>
    public const string AdminCertificateFileName = "admin.crt", AdminKeyFileName = "admin.key";
    private const string Format = "fedllm-provisioning-kit";

    /// <summary>The folder of <paramref name="clientId"/>'s kit: client-{id}/ under
    /// <paramref name="outputDir"/>.</summary>
    public static string ClientFolder(string outputDir, string clientId) => Path.Combine(outputDir, "client-" + clientId);

    /// <summary>The folder of admin <paramref name="name"/>'s kit: admin-{name}/ under
    /// <paramref name="outputDir"/>.</summary>
    public static string AdminFolder(string outputDir, string name) => Path.Combine(outputDir, "admin-" + name);

    /// <summary>Issues an operator certificate for <c>fedllm admin</c> (admin-{name}/: admin.crt, admin.key, ca.crt) and
    /// lists it in the server's admin-certificates.json (copy that file to the server).</summary>
    public static IReadOnlyList<KitFile> AddAdmin(string outputDir, string name)
    {
        ClientIds.Validate(name);
        ReadManifest(Path.Combine(outputDir, ManifestFileName));
        string dir = AdminFolder(outputDir, name);
        if (Directory.Exists(dir)) throw new InvalidOperationException($"admin '{name}' already exists in {outputDir}; to re-issue, delete {dir} first");
        using var ca = CertificateAuthority.Load(Path.Combine(outputDir, CaFolder));
        using var certificate = ca.IssueAdminCertificate(name);
        string crt = Path.Combine(dir, AdminCertificateFileName), key = Path.Combine(dir, AdminKeyFileName);
        PemFiles.WriteCertificate(crt, certificate);
        PemFiles.WritePrivateKey(key, certificate);
        string caCopy = Path.Combine(dir, CertificateAuthority.CertificateFileName);
        PemFiles.WriteCertificate(caCopy, ca.Certificate);
        string pinsPath = Path.Combine(outputDir, ServerFolder, AdminCertificates.FileName);
        var pins = File.Exists(pinsPath) ? AdminCertificates.Load(pinsPath) : new AdminCertificates();
        pins.Pin(name, certificate);
        pins.Save(pinsPath);
        return
        [
            new(crt, $"admin certificate of '{name}' (fedllm admin)"),
            new(key, $"private key of admin '{name}'", Secret: true),
            new(caCopy, "CA certificate: pins the server"),
            new(pinsPath, $"updated: admin '{name}' listed; copy to the server"),
        ];
    }

    /// <summary>Creates a new CA and the server's and every client's folder under <paramref name="outputDir"/>.</summary>
    /// <param name="serverHosts">DNS names and IPs the server is reached by; they go into its certificate.</param>
    /// <param name="clientIds">One folder, certificate and token per id.</param>
    /// <param name="serverUrl">https://HOST:PORT the clients dial; HOST must be one of <paramref name="serverHosts"/>.</param>
    /// <exception cref="InvalidOperationException"><paramref name="outputDir"/> already holds a kit (never overwritten: it would orphan every issued certificate).</exception>
    /// <param name="outputDir">The kit's folder; must not hold a kit yet.</param>
    public static IReadOnlyList<KitFile> Create(string outputDir, IEnumerable<string> serverHosts, IEnumerable<string> clientIds, string serverUrl)
    {
        ArgumentNullException.ThrowIfNull(outputDir);
        var hosts = serverHosts.Select(h => h.Trim()).Where(h => h.Length > 0).ToList();
        var clients = clientIds.Select(c => c.Trim()).ToList();
        foreach (var id in clients) ClientIds.Validate(id, nameof(clientIds));
        var duplicate = clients.GroupBy(c => c, StringComparer.OrdinalIgnoreCase).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null)
            throw new ArgumentException($"client id '{duplicate.Key}' is listed twice (ids are compared ignoring case, as folder names may be)", nameof(clientIds));
        if (hosts.Count == 0) throw new ArgumentException("give at least one server host name or IP address", nameof(serverHosts));
        var url = ParseServerUrl(serverUrl, hosts);
        if (File.Exists(Path.Combine(outputDir, ManifestFileName)) || File.Exists(Path.Combine(outputDir, CaFolder, CertificateAuthority.KeyFileName)))
            throw new InvalidOperationException($"{outputDir} already holds a provisioning kit; add clients to it with --add-client, or choose a new folder");

        var written = new List<KitFile>();
        using var ca = CertificateAuthority.Create();
        string caDir = Path.Combine(outputDir, CaFolder);
        ca.Save(caDir);
        written.Add(new(Path.Combine(caDir, CertificateAuthority.CertificateFileName), "CA certificate (trust anchor)"));
        written.Add(new(Path.Combine(caDir, CertificateAuthority.KeyFileName), "CA private key: keep with the operator", Secret: true));

        var tokens = new ClientTokens();
        var pins = new ClientCertificatePins();
        var clientTokens = clients.ToDictionary(id => id, tokens.Issue);
        foreach (var id in clients) written.AddRange(WriteClient(outputDir, ca, id, clientTokens[id], url, pins));
        written.InsertRange(2, WriteServer(Path.Combine(outputDir, ServerFolder), ca, hosts, url, clients, tokens, pins));

        string manifest = Path.Combine(outputDir, ManifestFileName);
        WriteManifest(manifest, url, hosts, clients, ca);
        written.Add(new(manifest, "what this kit holds (read by --add-client)"));
        return written;
    }

    /// <summary>Issues a certificate and token for one more client with the kit's existing CA; no other participant's
    /// certificate or token changes. Updates the server's token file and client list (copy server/client-tokens.json
    /// to the server again).</summary>
    public static IReadOnlyList<KitFile> AddClient(string outputDir, string clientId)
    {
        ClientIds.Validate(clientId);
        string manifestPath = Path.Combine(outputDir, ManifestFileName);
        var (url, hosts, clients) = ReadManifest(manifestPath);
        if (clients.Contains(clientId, StringComparer.OrdinalIgnoreCase) || Directory.Exists(ClientFolder(outputDir, clientId)))
            throw new InvalidOperationException($"client '{clientId}' already exists in {outputDir}; to re-issue, delete {ClientFolder(outputDir, clientId)} " +
                $"and its entry in {ManifestFileName} first");
        using var ca = CertificateAuthority.Load(Path.Combine(outputDir, CaFolder));

        string serverDir = Path.Combine(outputDir, ServerFolder);
        string tokensPath = Path.Combine(serverDir, ClientTokens.FileName);
        string pinsPath = Path.Combine(serverDir, ClientCertificatePins.FileName);
        var tokens = ClientTokens.Load(tokensPath);
        var pins = File.Exists(pinsPath) ? ClientCertificatePins.Load(pinsPath) : new ClientCertificatePins();
        string token = tokens.Issue(clientId);
        var written = new List<KitFile>(WriteClient(outputDir, ca, clientId, token, url, pins));
        tokens.Save(tokensPath);
        written.Add(new(tokensPath, $"updated: token hash of '{clientId}' added; copy to the server"));
        pins.Save(pinsPath);
        written.Add(new(pinsPath, $"updated: certificate of '{clientId}' pinned; copy to the server"));
        string serverConfig = Path.Combine(serverDir, ServerConfigFileName);
        if (AddToClientList(serverConfig, clientId)) written.Add(new(serverConfig, $"updated: '{clientId}' added to the roster"));
        clients.Add(clientId);
        WriteManifest(manifestPath, url, hosts, clients, ca);
        written.Add(new(manifestPath, "updated: client list"));
        return written;
    }

    private static IEnumerable<KitFile> WriteServer(string dir, CertificateAuthority ca, List<string> hosts, Uri url, List<string> clients,
        ClientTokens tokens, ClientCertificatePins pins)
    {
        using var certificate = ca.IssueServerCertificate(hosts);
        string crt = Path.Combine(dir, ServerCertificateFileName), key = Path.Combine(dir, ServerKeyFileName);
        PemFiles.WriteCertificate(crt, certificate);
        PemFiles.WritePrivateKey(key, certificate);
        string caCopy = Path.Combine(dir, CertificateAuthority.CertificateFileName);
        PemFiles.WriteCertificate(caCopy, ca.Certificate);
        string tokenFile = Path.Combine(dir, ClientTokens.FileName);
        tokens.Save(tokenFile);
        string pinFile = Path.Combine(dir, ClientCertificatePins.FileName);
        pins.Save(pinFile);
        string config = Path.Combine(dir, ServerConfigFileName);
        AtomicFile.WriteAllText(config, ServerYaml(url, clients));
        return
        [
            new(crt, $"server certificate for {string.Join(", ", hosts)}"),
            new(key, "server private key", Secret: true),
            new(caCopy, "CA certificate: accepts clients it issued"),
            new(tokenFile, "SHA-256 hashes of the client tokens"),
            new(pinFile, "SHA-256 of each client's current certificate"),
            new(config, "server config skeleton"),
        ];
    }

    private static IEnumerable<KitFile> WriteClient(string outputDir, CertificateAuthority ca, string clientId, string token, Uri url, ClientCertificatePins pins)
    {
        string dir = ClientFolder(outputDir, clientId);
        using var certificate = ca.IssueClientCertificate(clientId);
        pins.Pin(clientId, certificate);
        string crt = Path.Combine(dir, ClientCertificateFileName), key = Path.Combine(dir, ClientKeyFileName);
        PemFiles.WriteCertificate(crt, certificate);
        PemFiles.WritePrivateKey(key, certificate);
        string caCopy = Path.Combine(dir, CertificateAuthority.CertificateFileName);
        PemFiles.WriteCertificate(caCopy, ca.Certificate);
        string tokenFile = Path.Combine(dir, TokenFileName);
        PemFiles.WriteSecret(tokenFile, token + "\n");
        string config = Path.Combine(dir, ClientConfigFileName);
        AtomicFile.WriteAllText(config, ClientYaml(clientId, url));
        return
        [
            new(crt, $"certificate of client '{clientId}'"),
            new(key, $"private key of client '{clientId}'", Secret: true),
            new(caCopy, "CA certificate: pins the server"),
            new(tokenFile, $"token of client '{clientId}'", Secret: true),
            new(config, "client config skeleton"),
        ];
    }

    private static Uri ParseServerUrl(string serverUrl, List<string> hosts)
    {
        if (!Uri.TryCreate(serverUrl, UriKind.Absolute, out var url) || url.Scheme != Uri.UriSchemeHttps)
            throw new ArgumentException($"server URL '{serverUrl}' must be an absolute https:// URL such as https://{hosts.FirstOrDefault() ?? "localhost"}:50051", nameof(serverUrl));
        string host = url.HostNameType == UriHostNameType.IPv6 ? url.Host.Trim('[', ']') : url.Host;
        if (!hosts.Any(h => string.Equals(h.Trim('[', ']'), host, StringComparison.OrdinalIgnoreCase)))
            throw new ArgumentException($"server URL host '{host}' is not among the server hosts ({string.Join(", ", hosts)}); " +
                "clients would refuse the server's certificate. Add it to --server-host", nameof(serverUrl));
        return url;
    }

    // The skeletons follow the network layer's server.yaml / client.yaml (snake_case; paths relative to the folder the
    // process starts in), so they load as written once the placeholders are filled in.
    private static string ServerYaml(Uri url, List<string> clients) => $"""
        # FedLlm server, written by `fedllm certs` on {DateTime.UtcNow:yyyy-MM-dd}.
        # Start it from the folder that holds this server/ folder:  fedllm server --config server/server.yaml
        # model, data, federation, strategy and lora are the sections of run.yaml (fedllm simulate).
        model:
          path: null                 # base model folder; null = the embedded default (the clients must use the same model)
        federation:
          rounds: 5
          clients_per_round: {Math.Max(1, clients.Count)}
        strategy:
          algorithms: [fedavg]
        server:
          listen: 0.0.0.0:{url.Port}
          roster: [{string.Join(", ", clients)}]
          encoding: fp32             # fp32, bf16, fp16, int8, each optionally +gzip
          kit: {ServerFolder}                # this folder: {ServerCertificateFileName}, {ServerKeyFileName}, {CertificateAuthority.CertificateFileName}, {ClientTokens.FileName}
          auth: certificate          # or: token
        output: runs/federation

        """;

    private static string ClientYaml(string clientId, Uri url) => $"""
        # FedLlm client '{clientId}', written by `fedllm certs` on {DateTime.UtcNow:yyyy-MM-dd}.
        # Start it from the folder that holds this client-{clientId}/ folder:
        #   fedllm client --server {url.GetLeftPart(UriPartial.Authority)} --config client-{clientId}/{ClientConfigFileName}
        client_id: {clientId}
        model_path: null             # base model folder; null = the embedded default (the same model as the server's)
        data:
          path: /path/to/{clientId}-data.jsonl   # placeholder: this client's own training data (Alpaca schema)
          template: alpaca
        state_dir: client-state/{clientId}
        kit: client-{clientId}        # this folder: {ClientCertificateFileName}, {ClientKeyFileName}, {CertificateAuthority.CertificateFileName}, {TokenFileName}

        """;

    /// <summary>Adds <paramref name="clientId"/> to server.yaml's roster, in flow style ("roster: [a, b]") or block style
    /// ("roster:" then "- a" lines), keeping the operator's other edits and comments; false when the file or the roster
    /// is not there (the token file and certificate then still admit the client).</summary>
    private static bool AddToClientList(string serverConfig, string clientId)
    {
        if (!File.Exists(serverConfig)) return false;
        var lines = File.ReadAllLines(serverConfig).ToList();
        int header = lines.FindIndex(l => RosterLine().IsMatch(l));
        if (header < 0) return false;
        var match = RosterLine().Match(lines[header]);
        if (match.Groups["flow"].Success)
        {
            string items = match.Groups["items"].Value.Trim();
            if (items.Split(',', StringSplitOptions.TrimEntries).Contains(clientId)) return false; // re-issued: already listed
            lines[header] = $"{match.Groups["head"].Value}[{(items.Length == 0 ? clientId : items + ", " + clientId)}]{match.Groups["tail"].Value}";
        }
        else
        {
            int insertAt = header + 1;
            string indent = match.Groups["indent"].Value + "  ";
            while (insertAt < lines.Count && lines[insertAt].TrimStart().StartsWith("- ", StringComparison.Ordinal))
            {
                if (lines[insertAt].TrimStart()[2..].Trim() == clientId) return false; // re-issued: already listed
                indent = lines[insertAt][..(lines[insertAt].Length - lines[insertAt].TrimStart().Length)];
                insertAt++;
            }
            lines.Insert(insertAt, $"{indent}- {clientId}");
        }
        AtomicFile.WriteAllText(serverConfig, string.Join("\n", lines) + "\n");
        return true;
    }

    [GeneratedRegex(@"^(?<head>(?<indent>\s*)roster:\s*)(?:(?<flow>\[)(?<items>[^\]]*)\](?<tail>\s*(#.*)?)|\s*(#.*)?)$")]
    private static partial Regex RosterLine();

    private static void WriteManifest(string path, Uri url, List<string> hosts, List<string> clients, CertificateAuthority ca)
    {
        var document = new JsonObject
        {
            ["format"] = Format,
            ["version"] = 1,
            ["server_url"] = url.GetLeftPart(UriPartial.Authority),
            ["server_hosts"] = new JsonArray(hosts.Select(h => (JsonNode?)h).ToArray()),
            ["clients"] = new JsonArray(clients.Select(c => (JsonNode?)c).ToArray()),
            ["ca_subject"] = ca.Certificate.Subject,
            ["ca_expires"] = ca.Certificate.NotAfter.ToUniversalTime().ToString("u", CultureInfo.InvariantCulture),
        };
        AtomicFile.WriteAllText(path, document.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
    }

    private static (Uri Url, List<string> Hosts, List<string> Clients) ReadManifest(string path)
    {
        if (!File.Exists(path))
            throw new FileNotFoundException($"{path} does not exist: --add-client needs a folder made by `fedllm certs`", path);
        try
        {
            var root = JsonNode.Parse(File.ReadAllText(path)) as JsonObject;
            if (root is null || (string?)root["format"] != Format) throw new InvalidDataException($"{path}: not a FedLlm provisioning kit manifest");
            var url = new Uri((string?)root["server_url"] ?? throw new InvalidDataException($"{path}: server_url is missing"));
            var hosts = (root["server_hosts"] as JsonArray)?.Select(n => (string)n!).ToList() ?? throw new InvalidDataException($"{path}: server_hosts is missing");
            var clients = (root["clients"] as JsonArray)?.Select(n => (string)n!).ToList() ?? throw new InvalidDataException($"{path}: clients is missing");
            return (url, hosts, clients);
        }
        catch (Exception e) when (e is JsonException or UriFormatException or InvalidOperationException or FormatException)
        {
            throw new InvalidDataException($"{path}: cannot be read as a kit manifest ({e.Message})", e);
        }
    }
}
