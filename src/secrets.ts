/**
 * Every secret the process learns is registered here so that any text leaving the process
 * (stdout, stderr, JSON, error messages) can be scrubbed in one place.
 */
const secrets = new Set<string>();

export function registerSecret(value: string | undefined | null): void {
  if (value && value.length >= 3) {
    secrets.add(value);
    try {
      const encoded = encodeURIComponent(value);
      if (encoded !== value) secrets.add(encoded);
    } catch {
      // A lone surrogate cannot be URI-encoded; the raw value is registered already.
    }
  }
}

export function redact(text: string): string {
  let out = text;
  for (const secret of secrets) out = out.split(secret).join('***');
  // Userinfo in any URL, even one we never parsed (e.g. echoed back by a driver).
  return out.replace(/(postgres(?:ql)?:\/\/[^:/@\s]*):[^@\s]*@/gi, '$1:***@');
}

/** A DATABASE_URL fit for display: the password is never shown. */
export function describeDatabaseUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return '(unparseable URL)';
  }
}
