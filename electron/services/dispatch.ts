// Runs one contract call against the service: parse the params with the contract's
// schema, call, parse the result (a service bug must not leak an off-contract value),
// and turn errors into a message the UI can show. Every transport goes through here.
import { type Method, type ReplyEnvelope, RequestEnvelope, api, isMethod } from '../common/contracts/api';
import { ValidationError } from '../common/contracts/schema';
import { UserError, type VireoService } from './app';

export async function dispatch(service: VireoService, raw: unknown): Promise<ReplyEnvelope> {
  let env: RequestEnvelope;
  try {
    env = RequestEnvelope.parse(raw, 'request');
  } catch (e) {
    const id = typeof (raw as { id?: unknown })?.id === 'number' ? (raw as { id: number }).id : -1;
    return { t: 'error', id, message: (e as Error).message, code: 'bad-request' };
  }
  if (!isMethod(env.method)) return { t: 'error', id: env.id, message: `unknown method '${env.method}'`, code: 'bad-request' };
  const method: Method = env.method;
  try {
    const params = api[method].params.parse(env.params, 'params');
    const fn = service[method] as (p: unknown) => Promise<unknown>;
    const value = api[method].result.parse(await fn.call(service, params), 'result');
    return { t: 'result', id: env.id, value };
  } catch (e) {
    if (e instanceof ValidationError) return { t: 'error', id: env.id, message: e.message, code: 'invalid' };
    if (e instanceof UserError) return { t: 'error', id: env.id, message: e.message, code: 'user' };
    return { t: 'error', id: env.id, message: e instanceof Error ? e.message : String(e), code: 'internal' };
  }
}
