// A real OpenID provider for the SSO tests: panva's oidc-provider (OpenID certified), with
// its own keys, PKCE, ID tokens and back-channel logout. Only the person at the IdP's login
// page is automated: the interaction signs in the account named by `login_hint`, with the
// acr/amr that account is configured with, and consents to what the client asked for.
//
// Configured by environment: OP_PORT, OP_CLIENTS (JSON list of client metadata),
// OP_ACCOUNTS (JSON object: account id -> {claims, acr, amr}). Prints "ready" when up.
import http from 'node:http';
import { generateKeyPairSync, randomUUID } from 'node:crypto';

import Provider from 'oidc-provider';

const port = Number(process.env.OP_PORT);
const issuer = `http://127.0.0.1:${port}`;
const clients = JSON.parse(process.env.OP_CLIENTS);
const accounts = JSON.parse(process.env.OP_ACCOUNTS);

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: randomUUID(), use: 'sig', alg: 'RS256' };

const provider = new Provider(issuer, {
  clients,
  jwks: { keys: [signingKey] },
  cookies: { keys: ['test-op-cookie-key'] },
  // Entra ID, Okta and Keycloak put profile and group claims into the ID token as well.
  conformIdTokenClaims: false,
  claims: {
    // What Entra ID and Okta always put in the ID token: how the person authenticated.
    openid: ['sub', 'acr', 'amr', 'auth_time', 'sid'],
    email: ['email', 'email_verified'],
    profile: ['name', 'given_name', 'family_name', 'preferred_username'],
    groups: ['groups'],
  },
  scopes: ['openid', 'email', 'profile', 'groups', 'offline_access'],
  acrValues: ['urn:portcullis:test:password', 'urn:portcullis:test:mfa', 'phr', 'phrh'],
  features: {
    devInteractions: { enabled: false },
    backchannelLogout: { enabled: true },
    rpInitiatedLogout: { enabled: true },
  },
  pkce: { required: () => true },
  // The provider refuses loopback targets (its SSRF guard); the app under test listens on
  // 127.0.0.1, so this test provider's back-channel calls go out without that guard.
  fetch: (url, options) => {
    const { dispatcher, ...rest } = options;
    return globalThis.fetch(url, rest);
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(ctx, id) {
    const account = accounts[id];
    if (!account) return undefined;
    return { accountId: id, claims: async () => ({ sub: id, ...account.claims }) };
  },
});

async function interaction(req, res) {
  const details = await provider.interactionDetails(req, res);
  const { prompt, params } = details;
  if (prompt.name === 'login') {
    // A browser test clicks the sign-in button, which sends no hint: OP_DEFAULT_LOGIN signs in.
    const accountId = params.login_hint || process.env.OP_DEFAULT_LOGIN;
    const account = accounts[accountId];
    if (!account) {
      res.writeHead(403, { 'content-type': 'text/plain' }).end('unknown test account');
      return;
    }
    await provider.interactionFinished(
      req,
      res,
      { login: { accountId, acr: account.acr, amr: account.amr } },
      { mergeWithLastSubmission: false },
    );
    return;
  }
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId: details.session.accountId, clientId: params.client_id });
  if (prompt.details.missingOIDCScope) grant.addOIDCScope(prompt.details.missingOIDCScope.join(' '));
  if (prompt.details.missingOIDCClaims) grant.addOIDCClaims(prompt.details.missingOIDCClaims);
  const grantId = await grant.save();
  await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
}

// What went wrong at the provider shows in its log (the fixture prints it on failure).
provider.on('backchannel.error', (ctx, error, client) => console.log('backchannel.error', client.clientId, String(error), String(error.cause)));
provider.on('backchannel.success', (ctx, client) => console.log('backchannel.success', client.clientId));
provider.on('server_error', (ctx, error) => console.log('server_error', String(error)));

const callback = provider.callback();
http
  .createServer((req, res) => {
    if (req.url.startsWith('/interaction/')) {
      interaction(req, res).catch((error) => {
        res.writeHead(500, { 'content-type': 'text/plain' }).end(String(error));
      });
      return;
    }
    callback(req, res);
  })
  .listen(port, '127.0.0.1', () => console.log('ready'));
