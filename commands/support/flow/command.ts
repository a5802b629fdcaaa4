/** What a command's action returns: its exit code (errors are thrown and mapped in one place). */
export interface CommandResult {
  exitCode: number;
}
