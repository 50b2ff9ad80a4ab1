% bad: no net.layers anywhere
f = 1/100;
opts.batchSize = 10;
