/* Unannotated references: a unique non-exported variable, an export, and a duplicated name. */
extern char *saved_command_line;
extern long jiffies;

char *auto_cmdline(void) { return saved_command_line; }
long auto_jiffies(void) { return jiffies; }
