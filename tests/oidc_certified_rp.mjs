// The independent judge of tests/test_oidc_certified_rp.py: panva's openid-client (an OpenID
// Certified relying-party library) runs the protocol against a Tessera provider. Every check
// that matters (discovery, state, PKCE, the RFC 9207 `iss` response parameter, the id_token's
// signature and claims, the signed userinfo's signature, `iss` and `aud`) is the library's own.
//
// Environment: RP_PACKAGE_JSON (the package.json of the folder openid-client is installed in),
// RP_CONFIG (JSON: issuer, redirect_uri, post_logout_redirect_uri, and the clients rp, signed, rs).
// The browser steps (the person's login, the logout page) are the test's: this script writes
// {"browse": url} on a line of its own and reads back the URL the browser was sent to outside the
// provider. Its last line is {"result": {...}} or {"error": {...}}.

import { createRequire } from 'node:module';
import readline from 'node:readline';
import { pathToFileURL } from 'node:url';

const packageJson = process.env.RP_PACKAGE_JSON;
const require = createRequire(packageJson);
const client = await import(pathToFileURL(require.resolve('openid-client')).href);
const version = require('openid-client/package.json').version;
const { issuer, redirect_uri, post_logout_redirect_uri, rp, signed, rs } = JSON.parse(process.env.RP_CONFIG);

const answers = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const emit = (message) => process.stdout.write(JSON.stringify(message) + '\n');

async function browse(url) {
  emit({ browse: url.href });
  const { value, done } = await answers.next();
  if (done) throw new Error('the test closed the browser');
  return new URL(value);
}

/** What a refusal was: the library's error class and code, and the OAuth error it carries. */
function refusal(error) {
  const challenge = Array.isArray(error.cause) ? error.cause[0]?.parameters?.error : undefined;
  return { name: error.name, code: error.code, error: error.error ?? challenge ?? null, status: error.status ?? null,
           message: error.cause instanceof Error ? `${error.message}: ${error.cause.message}` : String(error.message) };
}

async function refused(promise) {
  try {
    await promise;
  } catch (error) {
    return refusal(error);
  }
  return null;
}

const checks = {};
const insecure = { execute: [client.allowInsecureRequests] }; // the test provider is http on 127.0.0.1

async function configure(registered, metadata) {
  const config = await client.discovery(new URL(issuer), registered.client_id, metadata,
    client.ClientSecretBasic(registered.client_secret), insecure);
  client.enableNonRepudiationChecks(config); // id_token and signed userinfo verified against the JWKS
  return config;
}

/** Authorization code + PKCE (S256) with state and nonce; the library checks the answer. */
async function login(config) {
  const verifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const nonce = client.randomNonce();
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri, scope: 'openid profile email', state, nonce,
    code_challenge: await client.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256',
  });
  const callback = await browse(url);
  const expected = { pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce, idTokenExpected: true };
  return { callback, expected, grant: () => client.authorizationCodeGrant(config, callback, expected) };
}

try {
  const config = await configure(rp, { id_token_signed_response_alg: 'ES256' });
  const metadata = config.serverMetadata();
  checks.discovery = {
    issuer: metadata.issuer, iss_parameter: metadata.authorization_response_iss_parameter_supported,
    userinfo_signing: metadata.userinfo_signing_alg_values_supported,
  };

  // the authorization response: a forged `iss` (a mix-up) and a forged `state` are refused by the
  // library before any token request (the code stays unspent), then the genuine one is redeemed
  const first = await login(config);
  const mixedUp = new URL(first.callback);
  mixedUp.searchParams.set('iss', 'https://attacker.example');
  const forgedState = new URL(first.callback);
  forgedState.searchParams.set('state', client.randomState());
  checks.iss_parameter = {
    present: first.callback.searchParams.get('iss'),
    forged_iss: await refused(client.authorizationCodeGrant(config, mixedUp, first.expected)),
    missing_iss: await refused(client.authorizationCodeGrant(config, (() => {
      const bare = new URL(first.callback); bare.searchParams.delete('iss'); return bare; })(), first.expected)),
    forged_state: await refused(client.authorizationCodeGrant(config, forgedState, first.expected)),
  };
  const tokens = await first.grant();
  const claims = tokens.claims();
  checks.code_flow = { sub: claims.sub, iss: claims.iss, aud: claims.aud, acr: claims.acr ?? null,
                       amr: claims.amr ?? null, refresh_token: Boolean(tokens.refresh_token) };

  const info = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
  checks.userinfo_json = { sub: info.sub, email: info.email ?? null };

  // a client registered with userinfo_signed_response_alg: the library demands a JWT, checks its
  // alg, iss and aud, and (non-repudiation) its signature with the JWKS key its kid names
  const signedConfig = await configure(signed, { id_token_signed_response_alg: 'ES256',
                                                 userinfo_signed_response_alg: signed.userinfo_alg });
  const signedTokens = await (await login(signedConfig)).grant();
  const signedInfo = await client.fetchUserInfo(signedConfig, signedTokens.access_token, claims.sub);
  checks.userinfo_signed = { sub: signedInfo.sub, iss: signedInfo.iss, aud: signedInfo.aud, alg: signed.userinfo_alg };
  checks.userinfo_signed_to_plain_client = await refused(
    client.fetchUserInfo(config, signedTokens.access_token, claims.sub)); // not its token: refused

  // refresh (rotation: a new refresh token), then RFC 7009 revocation of each token
  const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);
  checks.refresh = { rotated: refreshed.refresh_token !== tokens.refresh_token,
                     userinfo: (await client.fetchUserInfo(config, refreshed.access_token, claims.sub)).sub };
  const resource = await client.discovery(new URL(issuer), rs.client_id, {}, client.ClientSecretBasic(rs.client_secret),
                                          insecure);
  const active = await client.tokenIntrospection(resource, refreshed.access_token);
  await client.tokenRevocation(config, refreshed.access_token, { token_type_hint: 'access_token' });
  checks.revocation_access = {
    introspection_before: { active: active.active, sub: active.sub, client_id: active.client_id },
    userinfo_after: await refused(client.fetchUserInfo(config, refreshed.access_token, claims.sub)),
    introspection_after: (await client.tokenIntrospection(resource, refreshed.access_token)).active,
  };
  await client.tokenRevocation(config, refreshed.refresh_token, { token_type_hint: 'refresh_token' });
  checks.revocation_refresh = {
    refresh_after: await refused(client.refreshTokenGrant(config, refreshed.refresh_token)),
    introspection_after: (await client.tokenIntrospection(resource, refreshed.refresh_token)).active,
  };

  // RP-initiated logout: the session's tokens end with it (introspection inactive at once)
  const last = await (await login(config)).grant();
  const before = await client.tokenIntrospection(resource, last.access_token);
  const logoutState = client.randomState();
  const back = await browse(client.buildEndSessionUrl(config, {
    id_token_hint: last.id_token, post_logout_redirect_uri, state: logoutState }));
  checks.logout = {
    redirected: back.origin + back.pathname === post_logout_redirect_uri && back.searchParams.get('state') === logoutState,
    introspection_before: before.active,
    introspection_after: (await client.tokenIntrospection(resource, last.access_token)).active,
    userinfo_after: await refused(client.fetchUserInfo(config, last.access_token, claims.sub)),
    refresh_after: await refused(client.refreshTokenGrant(config, last.refresh_token)),
    other_client_after: (await client.tokenIntrospection(resource, signedTokens.access_token)).active,
  };
  emit({ result: { version, checks } });
} catch (error) {
  emit({ error: { ...refusal(error), stack: String(error?.stack ?? error) }, version });
  process.exitCode = 1;
}
process.stdin.destroy();
