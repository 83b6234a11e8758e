/** A run folder's events.jsonl as the tests read it: every message, and the last `state` (the run's record of how it ended). */
import { join } from 'node:path';
import { readJsonl } from '../../src/runfolder/eventLog';
import type { State, TrainerMessage } from '../../src/protocol/messages';

export const logOf = (dir: string): TrainerMessage[] => readJsonl<TrainerMessage>(join(dir, 'events.jsonl')).events;
export const lastState = (dir: string): State | undefined => logOf(dir).filter((m): m is State => m.type === 'state').at(-1);
