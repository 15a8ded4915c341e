// A real OpenID provider for the tests: npm's oidc-provider (OpenID
// Certified), configured with the clients the test writes and keys this
// script makes, issuing JWT access tokens for the audience "urn:lodestone:api".
//
//   node provider.mjs PORT DIR GENERATION
//
// DIR/clients.json: the clients (oidc-provider's client metadata, with
// `roles` and `plants` of our own, copied into their access tokens).
// DIR/keys-GENERATION.json: the signing keys; made here (RSA, P-256 and
// Ed25519) when missing, with each private key's PEM beside it
// (rsa-GENERATION.pem, ...) so that the test can sign tokens of its own with
// the provider's keys: expired ones, ones not yet valid, others. A new
// GENERATION on the same port is a key rotation.
//
// GET /test/jwks-requests answers how many times the keys were fetched.
// oidc-provider is found under $LODESTONE_NODE_MODULES.
import crypto from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import { pathToFileURL } from "node:url";

const [port, dir, generation = "1"] = process.argv.slice(2);
const modules = process.env.LODESTONE_NODE_MODULES;
const entry = path.join(modules, "oidc-provider", "lib", "index.js");
const { default: Provider, errors } = await import(pathToFileURL(entry).href);

const AUDIENCE = "urn:lodestone:api";
const TOKEN_SECONDS = Number(process.env.TOKEN_SECONDS || 300);

function makeKeys() {
  const made = [];
  for (const [name, type, options, alg] of [
    ["rsa", "rsa", { modulusLength: 2048 }, "RS256"],
    ["ec", "ec", { namedCurve: "P-256" }, "ES256"],
    ["ed", "ed25519", {}, "EdDSA"],
  ]) {
    const { privateKey } = crypto.generateKeyPairSync(type, options);
    const kid = `${name}-${generation}-${crypto.randomBytes(4).toString("hex")}`;
    fs.writeFileSync(
      path.join(dir, `${name}-${generation}.pem`),
      privateKey.export({ format: "pem", type: "pkcs8" }),
    );
    made.push({ ...privateKey.export({ format: "jwk" }), kid, alg, use: "sig" });
  }
  return made;
}

const keysFile = path.join(dir, `keys-${generation}.json`);
if (!fs.existsSync(keysFile)) {
  fs.writeFileSync(keysFile, JSON.stringify(makeKeys()));
}
const keys = JSON.parse(fs.readFileSync(keysFile, "utf8"));
const clients = JSON.parse(fs.readFileSync(path.join(dir, "clients.json"), "utf8"));

const issuer = `http://127.0.0.1:${port}`;
const provider = new Provider(issuer, {
  clients,
  extraClientMetadata: { properties: ["roles", "plants"] },
  jwks: { keys },
  scopes: ["openid", "lodestone"],
  pkce: { required: () => true },
  clientBasedCORS: () => true,
  features: {
    devInteractions: { enabled: true },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => AUDIENCE,
      useGrantedResource: () => true,
      getResourceServerInfo: (_ctx, resource) => {
        if (resource !== AUDIENCE) throw new errors.InvalidTarget();
        return {
          scope: "lodestone",
          audience: AUDIENCE,
          accessTokenTTL: TOKEN_SECONDS,
          accessTokenFormat: "jwt",
          jwt: { sign: { alg: "RS256" } },
        };
      },
    },
  },
  // The client's roles and plants travel in its access tokens; a person
  // signing in through the browser client gets the roles the account's
  // name asks for (see findAccount).
  extraTokenClaims: async (ctx, token) => {
    const client = ctx.oidc.client;
    const claims = {};
    if (token.accountId) {
      const [role, plant] = token.accountId.split("@");
      claims.roles = [`lodestone.${role}`];
      if (plant) claims.plants = plant.split("+");
    } else if (client) {
      if (client.roles) claims.roles = client.roles;
      if (client.plants) claims.plants = client.plants;
    }
    return claims;
  },
  findAccount: (_ctx, id) => ({ accountId: id, claims: () => ({ sub: id }) }),
});
provider.proxy = false;

let jwksRequests = 0;
const handle = provider.callback();
http
  .createServer((req, res) => {
    if (req.url === "/test/jwks-requests") {
      res.end(String(jwksRequests));
      return;
    }
    if (req.url.startsWith("/jwks")) jwksRequests += 1;
    handle(req, res);
  })
  .listen(Number(port), "127.0.0.1", () => {
    console.log(`ready ${issuer}`);
  });
