/* Shared by the objects of the P5 livepatch module. */
#ifndef P5_H
#define P5_H
struct seq_file;
int p5_cmdline_show(struct seq_file *m, void *v);
long p5_state_probe(int which);
long p5_proc_probe(void);
#endif
