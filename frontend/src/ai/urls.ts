/**
 * Where our routes are, as the browser sees them.
 *
 * `baseUrl` is the prefix the host mounted the API under: '' (the page's own
 * origin, the routes at `/api/...` and `/ws/...`), a path such as `/ai`
 * (`/ai/api/streams`, `/ai/ws/streams`), or an absolute URL such as
 * `https://api.example.com/ai`. A trailing slash is ignored.
 */

const ABSOLUTE = /^[a-z][a-z0-9+.-]*:/i;

/** `baseUrl` without a trailing slash: '' stays ''. */
export function normalizeBase(baseUrl: string | undefined): string {
  return (baseUrl ?? '').replace(/\/+$/, '');
}

/** The origin part of an absolute base ('' for a path or ''), and its path part. */
function splitBase(base: string): { origin: string; path: string } {
  if (!ABSOLUTE.test(base)) return { origin: '', path: base };
  const url = new URL(base);
  return { origin: url.origin, path: url.pathname.replace(/\/+$/, '') };
}

/** One of our routes (`/api/streams`) under the base. */
export function apiUrl(baseUrl: string | undefined, route: string): string {
  return `${normalizeBase(baseUrl)}${route}`;
}

/**
 * A path the server handed out (`events_url`, built with its `url_for`, so it
 * already carries the mount prefix when the app mounted us under one): used on
 * the base's origin as it is when it starts with the base's path; otherwise
 * (the prefix was added by a proxy in front of the server) put under the base.
 */
export function serverUrl(baseUrl: string | undefined, path: string): string {
  if (ABSOLUTE.test(path)) return path;
  const base = normalizeBase(baseUrl);
  const { origin, path: basePath } = splitBase(base);
  if (basePath !== '' && (path === basePath || path.startsWith(`${basePath}/`))) return `${origin}${path}`;
  return `${base}${path}`;
}

/** The WebSocket URL of `/ws/streams` under the base: ws(s):// on the base's host, or the page's. */
export function socketUrl(baseUrl: string | undefined, location: Pick<Location, 'protocol' | 'host'> = globalThis.location): string {
  const base = normalizeBase(baseUrl);
  if (ABSOLUTE.test(base)) {
    const url = new URL(`${base}/ws/streams`);
    if (url.protocol === 'https:') url.protocol = 'wss:';
    else if (url.protocol === 'http:') url.protocol = 'ws:';
    return url.toString();
  }
  const path = base === '' || base.startsWith('/') ? base : `/${base}`;
  return `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}${path}/ws/streams`;
}
