/* The exec storm's target: a static binary that does nothing. */
int main(void) { return 0; }
