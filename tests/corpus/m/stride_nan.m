% bad: a NaN stride
net.layers = {};
net.layers{end+1} = struct('type', 'conv', ...
    'weights', {{0.1*randn(3,3,1,4,'single'), zeros(1,4,'single')}}, ...
    'stride', NaN, 'pad', 0);
net.layers{end+1} = struct('type', 'relu');
net.layers{end+1} = struct('type', 'softmaxloss');
