% bad: an unbound name in an initializer
net.layers = {};
net.layers{end+1} = struct('type', 'conv', ...
    'weights', {{s*randn(3,3,1,4,'single'), zeros(1,4,'single')}}, ...
    'stride', 1, 'pad', 0);
net.layers{end+1} = struct('type', 'relu');
net.layers{end+1} = struct('type', 'softmaxloss');
